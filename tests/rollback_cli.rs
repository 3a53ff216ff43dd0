//! `verity rollback raise | lower | show` against a temporary root: the state file's format and
//! atomic replacement, refusals (exit 2) that leave it untouched, and a corrupt file failing
//! closed with its name in the message.

use std::path::Path;
use std::process::{Command, Output};

fn verity(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .output()
        .expect("run verity")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "verity failed: {}\n{}",
        o.status,
        stderr(o)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn state(root: &Path) -> std::path::PathBuf {
    root.join("var/lib/verity/rollback.json")
}

fn show_json(root: &Path) -> serde_json::Value {
    let out = ok(&verity(&[
        "rollback",
        "show",
        "--json",
        "--root",
        root.to_str().unwrap(),
    ]));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn raise_show_and_refusals() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_str().unwrap();
    assert_eq!(show_json(t.path())["floors"], serde_json::json!([]));
    assert!(ok(&verity(&["rollback", "show", "--root", root])).contains("No floors"));

    let o = verity(&["rollback", "raise", "foo", "1.9", "--root", root]);
    ok(&o);
    assert!(
        stderr(&o).contains("set the floor of sysext foo to 1.9"),
        "{}",
        stderr(&o)
    );
    // 1.10 is newer than 1.9 in systemd's ordering.
    let o = verity(&["rollback", "raise", "foo", "1.10", "--root", root]);
    ok(&o);
    assert!(stderr(&o).contains("from 1.9 to 1.10"), "{}", stderr(&o));
    ok(&verity(&[
        "rollback", "raise", "etc-conf", "7", "--class", "confext", "--root", root,
    ]));
    ok(&verity(&[
        "rollback", "raise", "my_os", "2024.1", "--class", "root", "--root", root,
    ]));

    // The file is the documented schema, written as the reader expects.
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state(t.path())).unwrap()).unwrap();
    assert_eq!(file["schema"], 1);
    assert_eq!(
        file["floors"],
        serde_json::json!([
            {"class": "sysext", "name": "foo", "version": "1.10"},
            {"class": "confext", "name": "etc-conf", "version": "7"},
            {"class": "root", "name": "my_os", "version": "2024.1"},
        ])
    );
    assert_eq!(show_json(t.path())["floors"], file["floors"]);
    let table = ok(&verity(&["rollback", "show", "--root", root]));
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["sysext", "foo", "1.10"]),
        "{table}"
    );

    let before = std::fs::read(state(t.path())).unwrap();
    let refused: &[(&[&str], &str)] = &[
        (&["raise", "foo", "1.9"], "--dangerous-lower-floor"),
        (&["raise", "foo_2", "3"], "'_'"),
        (&["raise", "foo", "3 beta"], "contains ' '"),
        (
            &["raise", "foo", "3", "--class", "nextroot"],
            "not sysext, confext or root",
        ),
        (&["lower", "foo", "1.0"], "--dangerous-lower-floor"),
        (
            // No TPM there: nothing is lowered without its record.
            &[
                "lower",
                "foo",
                "1.0",
                "--dangerous-lower-floor",
                "--tpm",
                "device:/nonexistent/tpm",
            ],
            "not lowered",
        ),
        (
            &["lower", "bar", "1", "--dangerous-lower-floor"],
            "no floor for sysext bar",
        ),
        (
            &["lower", "foo", "2", "--dangerous-lower-floor"],
            "is not lower",
        ),
    ];
    let log = t.path().join("log");
    for (args, want) in refused {
        let mut a: Vec<&str> = vec!["rollback"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--root", root]);
        if args[0] == "lower" {
            a.extend_from_slice(&["--event-log", log.to_str().unwrap()]);
        }
        let o = verity(&a);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{a:?}: {}", stderr(&o));
        assert_eq!(
            std::fs::read(state(t.path())).unwrap(),
            before,
            "{a:?} changed the file"
        );
    }
    // Nothing was recorded for the refused lowerings either.
    assert!(std::fs::read(&log).map(|b| b.is_empty()).unwrap_or(true));
}

#[test]
fn corrupt_state_fails_closed_with_the_file_named() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_str().unwrap();
    let p = state(t.path());
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let cases: &[(&[u8], &str)] = &[
        (b"", "not valid JSON"),
        (
            b"{\"schema\":1,\"floors\":[{\"class\":\"sysext\",\"name\":\"a\",\"vers",
            "not valid JSON",
        ),
        (b"{\"schema\":2,\"floors\":[]}", "schema 2"),
        (
            b"{\"schema\":1,\"floors\":[],\"extra\":true}",
            "unknown field",
        ),
    ];
    for (bytes, want) in cases {
        std::fs::write(&p, bytes).unwrap();
        for args in [
            vec!["rollback", "show", "--root", root],
            vec!["rollback", "raise", "foo", "1", "--root", root],
        ] {
            let o = verity(&args);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
            let e = stderr(&o);
            assert!(
                e.contains(&p.display().to_string()) && e.contains(want),
                "{e}"
            );
            // The corrupt file is left for the operator, not overwritten.
            assert_eq!(std::fs::read(&p).unwrap(), *bytes);
        }
    }
}
