//! Root test of the merge library API with a measurer that fails for one image: that image is
//! skipped with check `measure`, the others merge, every measurement happens before any overlay
//! is visible, and `strict` changes nothing. Runs without the libtest harness so it can re-execute
//! itself under `unshare -m --propagation private` (a multi-threaded test process cannot), under a
//! temporary root. Needs root and util-linux; fails otherwise.

use std::path::Path;
use std::process::Command;
use verity::admit::{Check, ImageInfo, Measurer};
use verity::host::Host;
use verity::image::Integrity;
use verity::image::Verified;
use verity::measure::step::Measured;
use verity::measure::EventLog;
use verity::merge::engine::{self, MergeError, MergeRequest, NoTpm};
use verity::merge::plan::Class;
use verity::merge::status::{is_ours, status};

/// Fails for one name; for the others records that no hierarchy was merged yet, then delegates.
struct FailOne<'a> {
    fail: &'a str,
    root: &'a Path,
    inner: NoTpm,
    seen: Vec<(String, bool)>,
}

impl Measurer for FailOne<'_> {
    fn measure(
        &mut self,
        v: Verified<ImageInfo>,
        pcr: u32,
    ) -> Result<Measured<Verified<ImageInfo>>, String> {
        let visible = is_ours(&self.root.join("usr"), Class::Sysext);
        self.seen.push((v.get().name.clone(), visible));
        if v.get().name == self.fail {
            return Err("PCR extend failed: TPM went away".into());
        }
        self.inner.measure(v, pcr)
    }
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

fn scenario() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("root");
    write(&r.join("etc/os-release"), "ID=debian\n");
    write(&r.join("usr/share/host"), "h\n");
    for n in ["a", "b", "c"] {
        let d = r.join("var/lib/extensions").join(n);
        write(
            &d.join(format!("usr/lib/extension-release.d/extension-release.{n}")),
            "ID=_any\n",
        );
        write(&d.join(format!("usr/share/{n}")), &format!("{n}\n"));
    }
    let ws = t.path().join("ws");
    // The host context built in code, as an embedder does; the pipeline settings come from it.
    let host = |strict| {
        let mut h = Host::new(&r);
        h.sysext.image_policy = Some("=unprotected".into());
        h.integrity = Integrity::Userspace;
        h.strict = strict;
        h.workspace = ws.clone();
        h
    };
    let pipeline = host(false)
        .admit_config(Class::Sysext, verity::rollback::admit::Guard::none())
        .unwrap();
    let req = MergeRequest::merge(Class::Sysext);
    let mut m = FailOne {
        fail: "b",
        root: &r,
        inner: NoTpm {
            log: EventLog::new(t.path().join("tpm2-measure.log")),
        },
        seen: Vec::new(),
    };
    let lock = engine::lock_class(&r, Class::Sysext).unwrap();
    match engine::merge(&lock, &host(true), &req, &pipeline, &mut m, None) {
        Err(MergeError::Strict(f)) => assert_eq!(f.len(), 1),
        other => panic!("strict merge should fail: {other:?}"),
    }
    assert!(
        !is_ours(&r.join("usr"), Class::Sysext),
        "strict left a merge behind"
    );
    assert!(!r.join("usr/share/a").exists());

    m.seen.clear();
    let out = engine::merge(&lock, &host(false), &req, &pipeline, &mut m, None).unwrap();
    let merged: Vec<&str> = out.merged.iter().map(|x| x.info.name.as_str()).collect();
    assert_eq!(merged, ["a", "c"]);
    assert_eq!(out.skipped.len(), 1);
    assert_eq!(out.skipped[0].name, "b");
    assert_eq!(out.skipped[0].check(), Check::Measure);
    assert!(out.skipped[0].reason().contains("TPM went away"));
    assert_eq!(m.seen.len(), 3);
    assert!(
        m.seen.iter().all(|(_, visible)| !visible),
        "measured after the overlay appeared: {:?}",
        m.seen
    );
    assert_eq!(
        std::fs::read_to_string(r.join("usr/share/a")).unwrap(),
        "a\n"
    );
    assert!(
        !r.join("usr/share/b").exists(),
        "an unmeasured image reached the hierarchy"
    );
    // The no-TPM measurer wrote its bypass records through the real log writer: the log reads
    // back, and each merged directory tree carries both of its bypasses (and b none), once per
    // run: the strict run measured a and c before b's failure made it change nothing.
    let recs = EventLog::new(t.path().join("tpm2-measure.log"))
        .read()
        .unwrap();
    let strings: Vec<&str> = recs.iter().filter_map(|r| r.string()).collect();
    for n in ["a", "c"] {
        for b in ["unprotected", "no-tpm"] {
            // A directory tree is measured with its content digest (verity-tree-v1).
            let want = format!("dangerous:{b}:sysext:{n}:unprotected-tree-");
            let is_it = |s: &&&str| {
                s.strip_prefix(want.as_str())
                    .and_then(|r| r.strip_suffix(":unsigned"))
                    .is_some_and(|d| d.len() == 64)
            };
            assert_eq!(
                strings.iter().filter(is_it).count(),
                2,
                "{want} in {strings:?}"
            );
        }
    }
    assert!(
        !strings.iter().any(|s| s.contains(":sysext:b:")),
        "{strings:?}"
    );
    let st = status(&r, Class::Sysext);
    assert_eq!(st[0].extensions, ["a", "c"]);
    drop(lock); // unmerge takes the class lock itself
    let (done, _) = engine::unmerge(&r, Class::Sysext, &ws).unwrap();
    assert_eq!(done.len(), 1);
    assert!(!r.join("usr/share/a").exists());
}

fn main() {
    if std::env::var_os("VERITY_TEST_IN_NS").is_some() {
        scenario();
        println!("root_pipeline_measurement_failure_skips_only_that_image ... ok");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let st = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(exe)
        .env("VERITY_TEST_IN_NS", "1")
        .status()
        .expect("unshare (util-linux) must be installed and the test run as root");
    assert!(
        st.success(),
        "root_pipeline_measurement_failure_skips_only_that_image failed"
    );
}
