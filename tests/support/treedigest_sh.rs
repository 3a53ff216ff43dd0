//! The verity-tree-v1 directory digest computed by other tools (find, stat, sort, sha256sum) from
//! its documented manifest: the independent oracle for `image::treedigest` and for the measured
//! records of directory extensions. Plain names only (no escaping).

use std::process::Command;

const SHELL_MANIFEST: &str = r#"
cd "$1"
{
  find . -type d -printf 'd %m %U %G - %p\n'
  find . -type l -printf 'l %m %U %G %l %p\n'
  find . -type f -printf '%m %U %G %s %p\n' | while read -r m u g s p; do
    printf 'f %s %s %s %s:%s %s\n' "$m" "$u" "$g" "$s" "$(sha256sum "$p" | cut -d' ' -f1)" "$p"
  done
} | while read -r t m rest; do printf '%s %04d %s\n' "$t" "$m" "$rest"; done | LC_ALL=C sort -t' ' -k6,6 | sha256sum | cut -d' ' -f1
"#;

pub fn shell_digest(dir: &std::path::Path) -> String {
    let o = Command::new("bash")
        .args(["-c", SHELL_MANIFEST, "manifest"])
        .arg(dir)
        .output()
        .expect("bash, find, sha256sum");
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}
