//! `verity image build | inspect | verify`: building signed extension images (DDI or sidecar),
//! showing what an image contains, and verifying it check by check (`--json` lists every check).

use super::{failed, op_err, CliResult};
use crate::image::build::{build, BuildError, BuildOptions};
use crate::image::fsread::FsType;
use crate::image::policy::Policy;
use crate::image::release::{OsRelease, Scope};
use crate::image::verify::{verify, DataCheck, Outcome, Report, VerifyOptions};
use crate::image::{arch, Class, DissectOptions, Dissected};
use crate::rollback::admit as rollback_admit;
use crate::sign::TrustStore;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum Command {
    /// Extension images: build, inspect, verify.
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
}

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Build a (signed) extension image from SRC_DIR.
    Build(BuildArgs),
    /// Show partitions, verity parameters, root hash, signer and extension-release.
    Inspect(InspectArgs),
    /// Verify every check; exit 1 if any fails.
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct BuildArgs {
    /// Source tree.
    pub src: PathBuf,
    /// Output image, NAME.raw.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// sysext, confext, or root (a whole OS tree for `soft-reboot prepare`).
    #[arg(long)]
    pub class: String,
    /// erofs (default) or squashfs.
    #[arg(long, default_value = "erofs")]
    pub fs: String,
    /// Signing key (PEM).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Signing certificate (PEM).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Architecture of the partition types (systemd id, default: this machine's).
    #[arg(long)]
    pub arch: Option<String>,
    /// Hex seed: salt, UUIDs and timestamps derived from it (reproducible output).
    #[arg(long)]
    pub seed: Option<String>,
    /// Write NAME.raw + NAME.verity + NAME.roothash (+ .p7s) instead of a DDI.
    #[arg(long)]
    pub sidecar: bool,
    /// Write IMAGE_VERSION=V into the image's extension-release (os-release for --class root):
    /// the version rollback protection compares with its floor.
    #[arg(long = "version")]
    pub image_version: Option<String>,
    /// Write VERITY_EPOCH=N likewise: refused once the TPM epoch (`verity rollback epoch`) passes N.
    #[arg(long)]
    pub epoch: Option<u64>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CommonArgs {
    /// The image.
    pub image: PathBuf,
    /// Certificate directory (repeatable; replaces the default verity.d search path).
    #[arg(long)]
    pub trust: Vec<PathBuf>,
    /// Root for the default verity.d dirs and os-release.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// sysext or confext (default: from the file name or the extension-release file found).
    #[arg(long)]
    pub class: Option<String>,
    /// Accept partitions of this architecture instead of the native one.
    #[arg(long)]
    pub arch: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Image policy (systemd syntax). Default: root=signed+absent:usr=signed+absent.
    #[arg(long)]
    pub image_policy: Option<String>,
    /// Host os-release to match (default: ROOT/etc/os-release, then ROOT/usr/lib/os-release).
    #[arg(long)]
    pub os_release: Option<PathBuf>,
    /// Only check that extension-release exists, not that it matches the host.
    #[arg(long)]
    pub no_host_match: bool,
    /// Match as in the initrd (scope initrd).
    #[arg(long)]
    pub initrd: bool,
    /// Also check the image against the TPM rollback epoch of this TPM (`device:...` or
    /// `swtpm:...`). The version floors are always those of ROOT/var/lib/verity/rollback.json.
    #[arg(long)]
    pub tpm: Option<String>,
    /// Allow `--tpm swtpm:...` (tests, demos).
    #[arg(long)]
    pub dangerous_tpm_simulator: bool,
}

/// Runs an image command.
pub fn run(cmd: Command) -> CliResult {
    let Command::Image { cmd } = cmd;
    match cmd {
        ImageCmd::Build(a) => run_build(a),
        ImageCmd::Inspect(a) => run_inspect(a),
        ImageCmd::Verify(a) => run_verify(a),
    }
}

fn class_arg(s: &str) -> Result<Class, super::CliError> {
    Class::from_name(s).ok_or_else(|| op_err(format!("--class: '{s}' is not sysext or confext")))
}

fn run_build(a: BuildArgs) -> CliResult {
    // A root image (for soft-reboot prepare) is not an extension class of its own in the image
    // code: it is built like one, with the OS-tree check instead of the extension check.
    let root = a.class == "root";
    let class = if root {
        Class::Sysext
    } else {
        class_arg(&a.class)?
    };
    let fs = match a.fs.as_str() {
        "erofs" => FsType::Erofs,
        "squashfs" => FsType::Squashfs,
        o => return Err(op_err(format!("--fs: '{o}' is not erofs or squashfs"))),
    };
    let seed = a
        .seed
        .as_deref()
        .map(|s| crate::hex::decode(s).map_err(|e| op_err(format!("--seed: {e}"))))
        .transpose()?;
    let opts = BuildOptions {
        src: a.src,
        output: a.output,
        class,
        fs,
        key: a.key.zip(a.cert),
        arch: a.arch.unwrap_or_else(|| arch::native().to_string()),
        seed,
        sidecar: a.sidecar,
        root,
        version: a.image_version,
        epoch: a.epoch,
    };
    let built = build(&opts).map_err(|e| match e {
        BuildError::Source(m) | BuildError::Usage(m) | BuildError::Io(m) => op_err(m),
    })?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&built).expect("serialisable")
        );
    } else {
        println!("Root hash:\t{}", built.root_hash);
        for o in &built.outputs {
            println!("Wrote:\t{}", o.display());
        }
        if let Some(f) = &built.fingerprint {
            println!("Signer:\t{f}");
        }
    }
    Ok(())
}

fn open(c: &CommonArgs) -> Result<Dissected, super::CliError> {
    let f =
        std::fs::File::open(&c.image).map_err(|e| op_err(format!("{}: {e}", c.image.display())))?;
    Dissected::open(
        f,
        &c.image,
        &DissectOptions {
            arch: c.arch.clone(),
        },
    )
    .map_err(|e| {
        // The report of an image that cannot even be dissected: the one check that failed.
        if c.json {
            let v = serde_json::json!({
                "image": c.image.display().to_string(),
                "checks": [{"name": e.check(), "result": "fail", "detail": e.to_string()}],
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&v).expect("serialisable")
            );
        }
        match e {
            crate::image::DissectError::Io { .. } => op_err(e),
            _ => failed(format!("{} check failed: {e}", e.check())),
        }
    })
}

fn trust_store(c: &CommonArgs) -> Result<TrustStore, super::CliError> {
    crate::host::trust_store(&c.root, &c.trust).map_err(|e| op_err(format!("--trust: {e}")))
}

fn host_release(root: &Path, explicit: Option<&Path>) -> Result<OsRelease, super::CliError> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => vec![root.join("etc/os-release"), root.join("usr/lib/os-release")],
    };
    for p in &candidates {
        match std::fs::read(p) {
            Ok(b) => {
                return OsRelease::parse(&b).map_err(|e| op_err(format!("{}: {e}", p.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => continue,
            Err(e) => return Err(op_err(format!("{}: {e}", p.display()))),
        }
    }
    Err(op_err("no host os-release found (pass --os-release)"))
}

/// systemd's id for the running kernel's architecture (`uname -m` mapped), or the one this binary
/// was built for when the kernel reports something systemd has no id for.
pub(super) fn host_arch() -> String {
    crate::host::running_arch()
}

fn print_report(r: &Report, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).expect("serialisable"));
        return;
    }
    println!("Image:\t{} ({})", r.image, r.layout);
    if let Some(a) = r.architecture {
        println!("Architecture:\t{a}");
    }
    for p in &r.partitions {
        println!(
            "Partition {}:\t{} {} offset={} size={} uuid={} label={}",
            p.index,
            p.type_name.as_deref().unwrap_or("-"),
            p.type_uuid,
            p.offset,
            p.size,
            p.uuid,
            p.label
        );
    }
    if let Some(fs) = r.filesystem {
        println!("File system:\t{}", fs.name());
    }
    if let Some(v) = &r.verity {
        println!(
            "Verity:\t{} data={} hash={} blocks={} salt={}",
            v.hash, v.data_block_size, v.hash_block_size, v.data_blocks, v.salt
        );
    }
    if let Some(h) = &r.root_hash {
        println!("Root hash:\t{h}");
    }
    if let Some(s) = &r.signer {
        println!("Signer:\t{} (sha256 {})", s.subject, s.fingerprint_hex());
    } else if let Some(f) = &r.claimed_fingerprint {
        println!("Signer:\tunverified, certificateFingerprint {f}");
    }
    if let Some(rel) = &r.extension_release {
        for (k, v) in rel {
            println!("Release:\t{k}={v}");
        }
    }
    for c in &r.checks {
        let s = match c.result {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        };
        println!("Check {}:\t{s}: {}", c.name, c.detail);
    }
}

fn run_inspect(a: InspectArgs) -> CliResult {
    let c = &a.common;
    let d = open(c)?;
    let opts = VerifyOptions {
        trust: trust_store(c)?,
        policy: Policy::allow_all(),
        class: c.class.as_deref().map(class_arg).transpose()?,
        host: None,
        host_arch: host_arch(),
        scope: Scope::System,
        read_release: true,
        data: DataCheck::Here,
    };
    let (r, _) = verify(d, &opts);
    print_report(&r, c.json);
    Ok(())
}

/// The `rollback` check of `image verify`: the verified extension-release's IMAGE_VERSION= and
/// VERITY_EPOCH= against the floor of the image's (class, name) and the TPM epoch.
fn rollback_check(r: &Report, guard: &rollback_admit::Guard) -> crate::image::verify::Check {
    let rel = r.extension_release.as_ref();
    let field = |k: &str| rel.and_then(|m| m.get(k)).map(String::as_str);
    let found = crate::rollback::decide::Evidence {
        version: field("IMAGE_VERSION"),
        epoch: field("VERITY_EPOCH"),
    };
    let class = r.class.map(crate::rollback::Class::from);
    let name = crate::image::release::release_name(&r.name);
    let (result, detail) = match class {
        None => (Outcome::Skip, "no extension class".to_string()),
        Some(cl) => match guard.check_evidence(cl, name, &found) {
            Ok(v) => (
                Outcome::Pass,
                format!(
                    "{cl} {name}: IMAGE_VERSION={} is not below its floor",
                    v.as_deref().unwrap_or("(none)")
                ),
            ),
            Err(e) => (Outcome::Fail, format!("{cl} {name}: {e}")),
        },
    };
    crate::image::verify::Check {
        name: "rollback",
        result,
        detail,
        micros: 0,
    }
}

fn run_verify(a: VerifyArgs) -> CliResult {
    let c = &a.common;
    // The floors of the system at --root (default /), and the epoch of --tpm if given: read
    // first, so a corrupt state file is exit 2 before anything is judged.
    // Without --tpm, image verify reads no epoch: for the host context that is no TPM.
    let mut on = crate::host::Host::new(&c.root);
    on.tpm = crate::host::TpmSetup {
        spec: a.tpm.clone(),
        dangerous_simulator: a.dangerous_tpm_simulator,
        dangerous_no_tpm: a.tpm.is_none(),
    };
    let guard = on.rollback_guard().map_err(op_err)?;
    let policy = crate::host::image_policy(a.image_policy.as_deref())
        .map_err(|e| op_err(format!("--image-policy: {e}")))?;
    let host = if a.no_host_match {
        None
    } else {
        Some(host_release(&c.root, a.os_release.as_deref())?)
    };
    let d = open(c)?;
    let opts = VerifyOptions {
        trust: trust_store(c)?,
        policy,
        class: c.class.as_deref().map(class_arg).transpose()?,
        host,
        host_arch: host_arch(),
        scope: if a.initrd {
            Scope::Initrd
        } else {
            Scope::System
        },
        read_release: true,
        data: DataCheck::Here,
    };
    let (mut r, mut res) = verify(d, &opts);
    if res.is_ok() {
        // Only a verified image's release fields are judged (verify read them from the
        // authenticated file system).
        let check = rollback_check(&r, &guard);
        if check.result == Outcome::Fail {
            res = Err("rollback check failed".into());
        }
        r.checks.push(check);
    }
    print_report(&r, c.json);
    match res {
        Ok(_) => Ok(()),
        Err(e) => Err(failed(format!(
            "{e}{}",
            r.failures()
                .iter()
                .map(|c| format!("\n  {}: {}", c.name, c.detail))
                .collect::<String>()
        ))),
    }
}
