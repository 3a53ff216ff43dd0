//! The pure parts of a verified soft reboot: the staging record and its checks, the `--keep-fd` syntax and the `LISTEN_*` environment of the file-descriptor store.
//! No files, no syscalls: `stage` and `exec` gather the facts and call these.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version of the staging record format.
pub const RECORD_VERSION: u32 = 1;

/// Device numbers of a block or anonymous device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevId {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl std::fmt::Display for DevId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// What the kernel says about the directory at the nextroot path right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// st_dev of the root directory of the mount.
    pub dev: DevId,
    /// Inode of that directory.
    pub ino: u64,
    /// Mount id.
    pub mnt_id: u64,
    /// Whether `mnt_id` is the never-reused (`STATX_MNT_ID_UNIQUE`) id.
    pub mnt_id_unique: bool,
    /// Mount id of the parent directory; equal to `mnt_id` when the path is not a mount point.
    pub parent_mnt_id: u64,
}

/// What `soft-reboot prepare` staged, written under /run for `soft-reboot exec` (or an operator) to
/// check before switching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// The nextroot directory the image was mounted on.
    pub nextroot: String,
    /// The image file that was admitted.
    pub image: String,
    /// Lower-case hex root hash of the image's verity tree (`None` only for unprotected trees that
    /// the image policy explicitly allowed).
    pub root_hash: Option<String>,
    /// Lower-case hex SHA-256 of the signer certificate, if signed.
    pub signer: Option<String>,
    /// Identity of the mounted root at staging time.
    pub mount: Observed,
    /// The init program found in the image (absolute, inside the new root).
    pub init: String,
    /// The os-release file found in the image, relative to its root.
    pub os_release: String,
    /// PCR extended by the measurement.
    pub pcr: Option<u32>,
    /// The event string measured.
    pub event: Option<String>,
    /// Bypasses of the chain that were asked for by name (`--dangerous-...`).
    pub dangerous: Vec<String>,
}

/// The staging record cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("staging record is not valid JSON for this version: {0}")]
    Parse(String),
    #[error(
        "staging record has version {found}; this verity understands version {RECORD_VERSION}"
    )]
    Version { found: u32 },
}

impl StageRecord {
    /// Parses a record written by [`StageRecord::to_json`].
    pub fn parse(bytes: &[u8]) -> Result<Self, RecordError> {
        let r: StageRecord =
            serde_json::from_slice(bytes).map_err(|e| RecordError::Parse(e.to_string()))?;
        if r.version != RECORD_VERSION {
            return Err(RecordError::Version { found: r.version });
        }
        Ok(r)
    }

    /// The record as pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// The nextroot is not what was staged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Mismatch {
    #[error("{0} is not a mount point (nothing is mounted there any more)")]
    NotMountPoint(String),
    #[error("{path}: device {found} is not the staged device {staged}")]
    Device {
        path: String,
        staged: DevId,
        found: DevId,
    },
    #[error("{path}: root inode {found} is not the staged inode {staged}")]
    Inode {
        path: String,
        staged: u64,
        found: u64,
    },
    #[error("{path}: mount id {found} is not the staged mount {staged} (the mount was replaced)")]
    Mount {
        path: String,
        staged: u64,
        found: u64,
    },
    #[error("staged root hash {staged} is not the expected {expected}")]
    RootHash { staged: String, expected: String },
    #[error("the record stages {staged}, not {asked}")]
    Path { staged: String, asked: String },
}

/// Checks that the mount found at `path` is the one the record staged and, if the caller named one,
/// that the staged root hash is the expected one.
pub fn check_staged(
    record: &StageRecord,
    path: &str,
    now: &Observed,
    expect_root_hash: Option<&str>,
) -> Result<(), Mismatch> {
    let p = || path.to_string();
    if record.nextroot.trim_end_matches('/') != path.trim_end_matches('/') {
        return Err(Mismatch::Path {
            staged: record.nextroot.clone(),
            asked: p(),
        });
    }
    if now.mnt_id == now.parent_mnt_id {
        return Err(Mismatch::NotMountPoint(p()));
    }
    let st = &record.mount;
    if st.dev != now.dev {
        return Err(Mismatch::Device {
            path: p(),
            staged: st.dev,
            found: now.dev,
        });
    }
    if st.ino != now.ino {
        return Err(Mismatch::Inode {
            path: p(),
            staged: st.ino,
            found: now.ino,
        });
    }
    // Classic mount ids are reused, unique ones never; compare only like with like.
    if st.mnt_id_unique == now.mnt_id_unique && st.mnt_id != now.mnt_id {
        return Err(Mismatch::Mount {
            path: p(),
            staged: st.mnt_id,
            found: now.mnt_id,
        });
    }
    if let Some(want) = expect_root_hash {
        let want = want.trim().to_ascii_lowercase();
        let staged = record.root_hash.clone().unwrap_or_else(|| "none".into());
        if staged != want {
            return Err(Mismatch::RootHash {
                staged,
                expected: want,
            });
        }
    }
    Ok(())
}

/// One descriptor to hand to the new init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepFd {
    /// Descriptor number in this process.
    pub fd: i32,
    /// Name for `LISTEN_FDNAMES`.
    pub name: String,
}

/// A `--keep-fd` argument is malformed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeepFdError {
    #[error("--keep-fd {0}: expected N or N:NAME with N a descriptor number above 2")]
    Syntax(String),
    #[error("--keep-fd {0}: names are 1-255 printable ASCII characters without ':'")]
    Name(String),
    #[error("descriptor {0} is kept twice")]
    Duplicate(i32),
}

/// Parses `N` or `N:NAME`. An unnamed descriptor gets systemd's default name `unknown`.
pub fn parse_keep_fd(arg: &str) -> Result<KeepFd, KeepFdError> {
    let (num, name) = match arg.split_once(':') {
        Some((n, name)) => (n, name),
        None => (arg, "unknown"),
    };
    let fd: i32 = num.parse().map_err(|_| KeepFdError::Syntax(arg.into()))?;
    if fd < 3 {
        return Err(KeepFdError::Syntax(arg.into()));
    }
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !ok {
        return Err(KeepFdError::Name(arg.into()));
    }
    Ok(KeepFd {
        fd,
        name: name.into(),
    })
}

/// Checks a whole `--keep-fd` list for duplicates.
pub fn check_keep_list(keep: &[KeepFd]) -> Result<(), KeepFdError> {
    for (i, k) in keep.iter().enumerate() {
        if keep[..i].iter().any(|o| o.fd == k.fd) {
            return Err(KeepFdError::Duplicate(k.fd));
        }
    }
    Ok(())
}

/// The environment of the new init: `base` without any stale `LISTEN_*`, plus the
/// socket-activation variables describing the kept descriptors (which start at 3). No variables are
/// added when nothing is kept.
pub fn listen_env(base: &[(String, String)], pid: i32, keep: &[KeepFd]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "LISTEN_FDS" | "LISTEN_PID" | "LISTEN_FDNAMES" | "LISTEN_PIDFDID"
            )
        })
        .cloned()
        .collect();
    if !keep.is_empty() {
        env.push(("LISTEN_PID".into(), pid.to_string()));
        env.push(("LISTEN_FDS".into(), keep.len().to_string()));
        let names: Vec<&str> = keep.iter().map(|k| k.name.as_str()).collect();
        env.push(("LISTEN_FDNAMES".into(), names.join(":")));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(dev: (u32, u32), ino: u64, mnt: u64, parent: u64) -> Observed {
        Observed {
            dev: DevId {
                major: dev.0,
                minor: dev.1,
            },
            ino,
            mnt_id: mnt,
            mnt_id_unique: true,
            parent_mnt_id: parent,
        }
    }

    fn record() -> StageRecord {
        StageRecord {
            version: RECORD_VERSION,
            nextroot: "/run/nextroot".into(),
            image: "/var/lib/os.raw".into(),
            root_hash: Some("ab12".into()),
            signer: Some("cd34".into()),
            mount: obs((7, 3), 36, 900, 20),
            init: "/sbin/init".into(),
            os_release: "usr/lib/os-release".into(),
            pcr: Some(15),
            event: Some("nextroot:os:ab12:cd34".into()),
            dangerous: vec![],
        }
    }

    #[test]
    fn staged_mount_checks() {
        let r = record();
        let p = "/run/nextroot";
        let cases: Vec<(Observed, Option<&str>, Result<(), Mismatch>)> = vec![
            (obs((7, 3), 36, 900, 20), None, Ok(())),
            (obs((7, 3), 36, 900, 20), Some("AB12\n"), Ok(())),
            (
                obs((7, 3), 36, 900, 20),
                Some("ffff"),
                Err(Mismatch::RootHash {
                    staged: "ab12".into(),
                    expected: "ffff".into(),
                }),
            ),
            (
                obs((7, 3), 36, 20, 20),
                None,
                Err(Mismatch::NotMountPoint(p.into())),
            ),
            (
                obs((7, 4), 36, 900, 20),
                None,
                Err(Mismatch::Device {
                    path: p.into(),
                    staged: DevId { major: 7, minor: 3 },
                    found: DevId { major: 7, minor: 4 },
                }),
            ),
            (
                obs((7, 3), 2, 900, 20),
                None,
                Err(Mismatch::Inode {
                    path: p.into(),
                    staged: 36,
                    found: 2,
                }),
            ),
            (
                obs((7, 3), 36, 901, 20),
                None,
                Err(Mismatch::Mount {
                    path: p.into(),
                    staged: 900,
                    found: 901,
                }),
            ),
        ];
        for (now, want_hash, want) in cases {
            assert_eq!(check_staged(&r, p, &now, want_hash), want, "{now:?}");
        }
        assert_eq!(
            check_staged(&r, "/run/other", &obs((7, 3), 36, 900, 20), None),
            Err(Mismatch::Path {
                staged: "/run/nextroot".into(),
                asked: "/run/other".into()
            })
        );
        // Trailing slashes name the same directory.
        assert_eq!(
            check_staged(&r, "/run/nextroot/", &obs((7, 3), 36, 900, 20), None),
            Ok(())
        );
    }

    #[test]
    fn record_round_trip_and_version() {
        let r = record();
        assert_eq!(StageRecord::parse(r.to_json().as_bytes()), Ok(r.clone()));
        let mut v2 = r;
        v2.version = 2;
        assert_eq!(
            StageRecord::parse(v2.to_json().as_bytes()),
            Err(RecordError::Version { found: 2 })
        );
        assert!(matches!(
            StageRecord::parse(b"{"),
            Err(RecordError::Parse(_))
        ));
    }

    #[test]
    fn keep_fd_syntax() {
        assert_eq!(
            parse_keep_fd("7"),
            Ok(KeepFd {
                fd: 7,
                name: "unknown".into()
            })
        );
        assert_eq!(
            parse_keep_fd("9:store"),
            Ok(KeepFd {
                fd: 9,
                name: "store".into()
            })
        );
        for bad in ["2", "-1", "x", "", "3:"] {
            assert!(parse_keep_fd(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_keep_fd("4:a b"),
            Err(KeepFdError::Name("4:a b".into()))
        );
        assert_eq!(
            parse_keep_fd("4:a:b"),
            Err(KeepFdError::Name("4:a:b".into()))
        );
        let k = [parse_keep_fd("5").unwrap(), parse_keep_fd("5:x").unwrap()];
        assert_eq!(check_keep_list(&k), Err(KeepFdError::Duplicate(5)));
    }

    #[test]
    fn listen_environment() {
        let base = vec![
            ("PATH".to_string(), "/bin".to_string()),
            ("LISTEN_FDS".to_string(), "9".to_string()),
            ("LISTEN_PID".to_string(), "77".to_string()),
        ];
        let keep = [
            parse_keep_fd("8:store").unwrap(),
            parse_keep_fd("5").unwrap(),
        ];
        let env = listen_env(&base, 1, &keep);
        assert_eq!(
            env,
            vec![
                ("PATH".to_string(), "/bin".to_string()),
                ("LISTEN_PID".to_string(), "1".to_string()),
                ("LISTEN_FDS".to_string(), "2".to_string()),
                ("LISTEN_FDNAMES".to_string(), "store:unknown".to_string()),
            ]
        );
        // Nothing kept: stale variables go, none are invented.
        assert_eq!(
            listen_env(&base, 1, &[]),
            vec![("PATH".to_string(), "/bin".to_string())]
        );
    }
}
