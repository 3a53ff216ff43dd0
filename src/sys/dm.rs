//! Kernel integrity activation: read-only dm-verity devices through the `devicemapper` crate.
//!
//! One device per root hash, named `<roothash-hex>-verity` like systemd's, so a second activation of
//! the same image (by us or by systemd) reuses it instead of stacking another. The table line comes
//! from [`crate::verity::table`]; devices are always given as `major:minor`, which is also how the
//! kernel prints them back, so an existing table can be compared field by field. Whether an
//! existing device may be reused (same table, read-only, a signature state that covers what this
//! call verified) is decided by [`crate::verity::reuse::decide`]; this module only reads the
//! device and carries the decision out.
//!
//! Signatures: the PKCS#7 blob is handed to the kernel as a `user` key in the thread keyring and named
//! by `root_hash_sig_key_desc` in a table loaded on the same thread ([`super::keyring`]). When the
//! kernel does not trust the signer (its keyrings hold only the distribution's keys) or lacks the
//! option, this module reports it ([`DmError::SignatureRejected`], [`DmError::SignatureUnsupported`])
//! and takes no trust decision: whether to load the table again without the signature (what systemd
//! does with `userspace_verity_signature`, allowed only after a userspace check against the host's
//! trust store) is the caller's, `crate::admit::integrity::activate_signed`.

use crate::verity::geometry::Geometry;
use crate::verity::reuse::{self, Decision, SignatureState};
use crate::verity::table::{self, FecArgs};
use devicemapper::{DevId, DmError as CrateError, DmFlags, DmName, DmOptions, DmUuid, DM};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The control node whose absence means the kernel has no device-mapper.
pub const CONTROL: &str = "/dev/mapper/control";
/// dm-verity target version that introduced `root_hash_sig_key_desc` (Linux 5.4).
const SIG_MIN_VERSION: (u32, u32) = (1, 5);

/// A block device by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevNum {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// How the root-hash signature, if any, is handled.
#[derive(Debug, Clone, Copy)]
pub enum Signature<'a> {
    /// No signature: the table is loaded without one.
    None,
    /// Hand this PKCS#7 DER to the kernel. `userspace_verified` says whether the caller already
    /// checked it against the host's trust store: a fact for the reuse rule
    /// ([`crate::verity::reuse`]); a kernel refusal is reported either way.
    Pkcs7 {
        /// Detached DER signature over the lower-case hex root hash.
        der: &'a [u8],
        /// The signature passed the userspace check.
        userspace_verified: bool,
    },
}

/// What to activate.
#[derive(Debug, Clone)]
pub struct VerityRequest<'a> {
    /// Tree geometry (parameters and where the top level starts on `hash_dev`).
    pub geometry: &'a Geometry,
    /// Device holding the data blocks from offset 0.
    pub data_dev: DevNum,
    /// Device holding the hash tree.
    pub hash_dev: DevNum,
    /// Root digest.
    pub root: &'a [u8],
    /// 16-byte UUID for the DM UUID (the superblock's), if known.
    pub uuid: Option<[u8; 16]>,
    /// FEC arguments (device given as `major:minor`).
    pub fec: Option<FecArgs>,
    /// Signature handling.
    pub signature: Signature<'a>,
}

/// An active verity device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedDevice {
    /// Device-mapper name (`<roothash>-verity`).
    pub name: String,
    /// Device number of the mapped device.
    pub dev: DevNum,
    /// A node to open or mount: `/dev/mapper/NAME` when udev made it, else `/dev/dm-MINOR`.
    pub path: PathBuf,
    /// An identical device already existed and was reused.
    pub reused: bool,
    /// The kernel itself checked the signature (`root_hash_sig_key_desc` was accepted).
    pub kernel_signature: bool,
    /// Why the kernel did not check the signature, when one was given and it did not.
    pub kernel_signature_note: Option<String>,
}

/// Why activation failed. Each names the device and the operation.
#[derive(Debug, Error)]
pub enum DmError {
    #[error("the kernel has no device-mapper ({CONTROL} is missing; load dm-mod or use --integrity userspace)")]
    NoDeviceMapper,
    #[error("cannot open {CONTROL}: {0}")]
    Control(String),
    #[error("the kernel has no dm-verity target (load the dm-verity module or use --integrity userspace): {0}")]
    NoVerityTarget(String),
    #[error("the kernel's dm-verity target {0}.{1} does not support the signature option (needs 1.5, CONFIG_DM_VERITY_VERIFY_ROOTHASH_SIG)")]
    SignatureUnsupported(u32, u32),
    #[error("the kernel rejected the root-hash signature of {name} ({reason})")]
    SignatureRejected { name: String, reason: String },
    #[error("cannot add the signature of {name} to the thread keyring: {source}")]
    Keyring {
        name: String,
        source: std::io::Error,
    },
    #[error("device-mapper device {name} exists and is not reused: {reason}")]
    Reuse {
        name: String,
        reason: reuse::Refusal,
    },
    #[error("cannot use the device: {0}")]
    Device(String),
    #[error("device-mapper {op} of {name} failed: {msg}")]
    Ioctl {
        op: &'static str,
        name: String,
        msg: String,
    },
}

/// The device name for a root hash: systemd's `<hex>-verity`, cut to the kernel's 127-byte limit.
pub fn device_name(root: &[u8]) -> String {
    let mut n = format!("{}-verity", crate::hex::encode(root));
    if n.len() > 127 {
        n = crate::hex::encode(root)[..120].to_string() + "-verity";
    }
    n
}

/// libcryptsetup's DM UUID form, `CRYPT-VERITY-<uuid hex>-<name>`, so udev rules and systemd
/// recognise the device. Without a superblock UUID the first 16 bytes of the root hash stand in.
pub fn dm_uuid(uuid: Option<[u8; 16]>, root: &[u8], name: &str) -> String {
    let u = uuid.unwrap_or_else(|| {
        let mut u = [0u8; 16];
        let n = root.len().min(16);
        u[..n].copy_from_slice(&root[..n]);
        u
    });
    let mut s = format!("CRYPT-VERITY-{}-{}", crate::hex::encode(&u), name);
    s.truncate(128);
    s
}

fn ioctl_err(op: &'static str, name: &str, e: CrateError) -> DmError {
    DmError::Ioctl {
        op,
        name: name.to_string(),
        msg: e.to_string(),
    }
}

/// The errno of a failed ioctl, when the crate reports one.
fn errno_of(e: &CrateError) -> Option<i32> {
    match e {
        CrateError::Core(devicemapper::errors::Error::Ioctl(_, _, _, errno)) => {
            Some(**errno as i32)
        }
        _ => None,
    }
}

/// Opens the device-mapper control node, with a clear error where the kernel has none.
fn open_dm() -> Result<DM, DmError> {
    open_dm_at(Path::new(CONTROL))
}

/// [`open_dm`] with the control node's path as a parameter, so the missing-node branch is testable
/// on machines that have device-mapper.
fn open_dm_at(control: &Path) -> Result<DM, DmError> {
    if !control.exists() {
        return Err(DmError::NoDeviceMapper);
    }
    DM::new().map_err(|e| DmError::Control(e.to_string()))
}

/// The loaded dm-verity target's version, if the target is loaded.
fn verity_version(dm: &DM) -> Option<(u32, u32)> {
    dm.list_versions()
        .ok()?
        .into_iter()
        .find_map(|(n, a, b, _)| (n == "verity").then_some((a, b)))
}

fn node_for(name: &str, dev: DevNum) -> PathBuf {
    let mapper = Path::new("/dev/mapper").join(name);
    if mapper.exists() {
        mapper
    } else {
        PathBuf::from(format!("/dev/dm-{}", dev.minor))
    }
}

/// Activates a read-only dm-verity device for `req`, or reuses an identical one.
pub fn activate_verity(req: &VerityRequest<'_>) -> Result<MappedDevice, DmError> {
    let dm = open_dm()?;
    let name = device_name(req.root);
    let dm_name = DmName::new(&name).map_err(|e| ioctl_err("name check", &name, e))?;
    let id = DevId::Name(dm_name);
    let len = table::length_sectors(req.geometry);
    let data = req.data_dev.to_string();
    let hash = req.hash_dev.to_string();
    let plain = table::params(req.geometry, &data, &hash, req.root, req.fec.as_ref(), None);

    // Reuse: a device of this name exists. The name proves nothing; the decision is
    // `reuse::decide`'s, on the live table and flags read here.
    if let Ok(info) = dm.device_info(&id) {
        let (_, targets) = dm
            .table_status(
                &id,
                DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE),
            )
            .map_err(|e| ioctl_err("table status", &name, e))?;
        let existing = reuse::Existing {
            targets: targets
                .into_iter()
                .map(|(start, length, kind, params)| reuse::Target {
                    start,
                    length,
                    kind,
                    params,
                })
                .collect(),
            read_only: info.flags().contains(DmFlags::DM_READONLY),
            suspended: info.flags().contains(DmFlags::DM_SUSPEND),
        };
        let wanted = reuse::Wanted {
            length: len,
            params: &plain,
            signature: match req.signature {
                Signature::None => SignatureState::None,
                Signature::Pkcs7 {
                    userspace_verified: true,
                    ..
                } => SignatureState::UserspaceVerified,
                Signature::Pkcs7 { .. } => SignatureState::KernelToCheck,
            },
        };
        let kernel_signature = match reuse::decide(&existing, &wanted) {
            Decision::Reuse { kernel_signature } => kernel_signature,
            Decision::Refuse(reason) => return Err(DmError::Reuse { name, reason }),
        };
        let d = info.device();
        let dev = DevNum {
            major: d.major,
            minor: d.minor,
        };
        return Ok(MappedDevice {
            path: node_for(&name, dev),
            name,
            dev,
            reused: true,
            kernel_signature,
            kernel_signature_note: Some(if kernel_signature {
                "reused an existing device the kernel loaded with a signature".into()
            } else {
                "reused an existing device loaded without a signature".into()
            }),
        });
    }

    let uuid = dm_uuid(req.uuid, req.root, &name);
    let dm_uuid = DmUuid::new(&uuid).map_err(|e| ioctl_err("uuid check", &name, e))?;
    // Default udev flags, as veritysetup: on a host with udev, /dev/mapper/NAME and the usual
    // symlinks appear; without udev (initrd, VM) the crate skips the udev handshake.
    let ro = DmOptions::default().set_flags(DmFlags::DM_READONLY);
    dm.device_create(dm_name, Some(dm_uuid), ro)
        .map_err(|e| ioctl_err("create", &name, e))?;

    let result = load_and_resume(&dm, &id, &name, len, req, &plain);
    if result.is_err() {
        // Never leave an empty or half-made device behind.
        let _ = dm.device_remove(&id, DmOptions::private());
    }
    let kernel_signature = result?;
    let info = dm
        .device_info(&id)
        .map_err(|e| ioctl_err("info", &name, e))?;
    let d = info.device();
    let dev = DevNum {
        major: d.major,
        minor: d.minor,
    };
    Ok(MappedDevice {
        path: node_for(&name, dev),
        name,
        dev,
        reused: false,
        kernel_signature,
        kernel_signature_note: None,
    })
}

/// Loads the table (with the signature when there is one) and resumes the device. Returns whether
/// the kernel checked a signature; a refused signature is an error (no fallback here).
fn load_and_resume(
    dm: &DM,
    id: &DevId<'_>,
    name: &str,
    len: u64,
    req: &VerityRequest<'_>,
    plain: &str,
) -> Result<bool, DmError> {
    let ro = DmOptions::default().set_flags(DmFlags::DM_READONLY);
    let load = |params: &str| {
        dm.table_load(
            id,
            &[(0, len, "verity".to_string(), params.to_string())],
            ro,
        )
    };
    let kernel_sig = match req.signature {
        Signature::None => {
            load(plain).map_err(|e| load_error(dm, name, e))?;
            false
        }
        Signature::Pkcs7 { der, .. } => {
            let version = verity_version(dm);
            if let Some((a, b)) = version.filter(|v| *v < SIG_MIN_VERSION) {
                return Err(DmError::SignatureUnsupported(a, b));
            }
            let desc = format!("verity:{name}");
            // The key must live in this thread's keyring while the table is loaded on this
            // same thread; it is unlinked when `key` drops, right after the load.
            let key = crate::sys::keyring::ThreadUserKey::add(&desc, der).map_err(|source| {
                DmError::Keyring {
                    name: name.to_string(),
                    source,
                }
            })?;
            let signed = table::params(
                req.geometry,
                &req.data_dev.to_string(),
                &req.hash_dev.to_string(),
                req.root,
                req.fec.as_ref(),
                Some(key.desc()),
            );
            let r = load(&signed);
            drop(key);
            if let Err(e) = r {
                let reason = match errno_of(&e) {
                    Some(libc::ENOKEY) => {
                        "signer not in the kernel's trusted keyrings (ENOKEY)".to_string()
                    }
                    Some(libc::EKEYREJECTED) => "signature rejected (EKEYREJECTED)".to_string(),
                    Some(n) => std::io::Error::from_raw_os_error(n).to_string(),
                    None => e.to_string(),
                };
                return Err(DmError::SignatureRejected {
                    name: name.to_string(),
                    reason,
                });
            }
            true
        }
    };
    // Resume (device_suspend without DM_SUSPEND) makes the loaded table live.
    dm.device_suspend(id, DmOptions::default())
        .map_err(|e| ioctl_err("resume", name, e))?;
    Ok(kernel_sig)
}

/// A table-load failure, turned into "no verity target" when that is the cause.
fn load_error(dm: &DM, name: &str, e: CrateError) -> DmError {
    if verity_version(dm).is_none() {
        return DmError::NoVerityTarget(e.to_string());
    }
    let msg = match errno_of(&e) {
        Some(n) => format!(
            "table load: {} (see the kernel log for the dm-verity reason)",
            std::io::Error::from_raw_os_error(n)
        ),
        None => e.to_string(),
    };
    DmError::Ioctl {
        op: "table load",
        name: name.to_string(),
        msg,
    }
}

/// Activates over two already-open block devices (a DDI's partitions, loop devices over sidecar
/// files, virtio disks), reading the veritysetup superblock at `hash_offset` of `hash` for the
/// geometry. This is the shape the merge pipeline's activator needs: the fds it verified are the
/// devices the table names, by number, so nothing is re-opened by path.
pub fn activate_block_files(
    data: &std::fs::File,
    hash: &std::fs::File,
    hash_offset: u64,
    root: &[u8],
    signature: Signature<'_>,
) -> Result<MappedDevice, DmError> {
    use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
    let devnum = |f: &std::fs::File, what: &str| -> Result<DevNum, DmError> {
        let m = f
            .metadata()
            .map_err(|e| DmError::Device(format!("{what}: fstat: {e}")))?;
        if !m.file_type().is_block_device() {
            return Err(DmError::Device(format!(
                "{what} is not a block device (attach a loop device first)"
            )));
        }
        Ok(DevNum {
            major: rustix::fs::major(m.rdev()),
            minor: rustix::fs::minor(m.rdev()),
        })
    };
    let data_dev = devnum(data, "data")?;
    let hash_dev = devnum(hash, "hash")?;
    let mut sb = [0u8; crate::verity::superblock::SUPERBLOCK_SIZE];
    hash.read_exact_at(&mut sb, hash_offset).map_err(|e| {
        DmError::Device(format!(
            "hash {hash_dev}: superblock at byte {hash_offset}: {e}"
        ))
    })?;
    let sb = crate::verity::Superblock::parse(&sb).map_err(|e| {
        DmError::Device(format!(
            "hash {hash_dev}: superblock at byte {hash_offset}: {e}"
        ))
    })?;
    let params = sb.params();
    let start =
        crate::verity::geometry::hash_start_block(hash_offset, params.hash_block_size, true)
            .map_err(|e| DmError::Device(e.to_string()))?;
    let geometry = Geometry::new(params, start).map_err(|e| DmError::Device(e.to_string()))?;
    if root.len() != geometry.params.alg.digest_size() {
        return Err(DmError::Device(format!(
            "root hash has {} bytes; {} needs {}",
            root.len(),
            geometry.params.alg.name(),
            geometry.params.alg.digest_size()
        )));
    }
    activate_verity(&VerityRequest {
        geometry: &geometry,
        data_dev,
        hash_dev,
        root,
        uuid: Some(sb.uuid),
        fec: None,
        signature,
    })
}

/// Removes a verity device by name (deferred if it is still open).
pub fn deactivate(name: &str) -> Result<(), DmError> {
    let dm = open_dm()?;
    let dm_name = DmName::new(name).map_err(|e| ioctl_err("name check", name, e))?;
    dm.device_remove(
        &DevId::Name(dm_name),
        DmOptions::default().set_flags(DmFlags::DM_DEFERRED_REMOVE),
    )
    .map_err(|e| ioctl_err("remove", name, e))?;
    Ok(())
}

/// Kernel integrity activation as the merge pipeline sees it, so tests can substitute a fake.
pub trait KernelVerity {
    /// Activate (or reuse) a read-only verity device.
    fn activate(&self, req: &VerityRequest<'_>) -> Result<MappedDevice, DmError>;
    /// Remove a device made by [`KernelVerity::activate`].
    fn deactivate(&self, name: &str) -> Result<(), DmError>;
}

/// The real device-mapper.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeviceMapper;

impl KernelVerity for DeviceMapper {
    fn activate(&self, req: &VerityRequest<'_>) -> Result<MappedDevice, DmError> {
        activate_verity(req)
    }
    fn deactivate(&self, name: &str) -> Result<(), DmError> {
        deactivate(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_systemd_and_cryptsetup() {
        let root = [0xabu8; 32];
        let name = device_name(&root);
        assert_eq!(name, format!("{}-verity", "ab".repeat(32)));
        let u = dm_uuid(Some([0x12; 16]), &root, &name);
        assert_eq!(u, format!("CRYPT-VERITY-{}-{}", "12".repeat(16), name));
        // sha512 roots exceed the kernel's 128-byte name limit and are cut.
        let long = device_name(&[0xcd; 64]);
        assert!(long.len() <= 127 && long.ends_with("-verity"));
        assert!(dm_uuid(None, &[0xcd; 64], &long).len() <= 128);
    }

    #[test]
    fn no_control_node_is_a_clear_error() {
        // A control node that does not exist (whatever this machine has) must give an error that
        // names the cause rather than a bare ioctl failure.
        let missing = Path::new("/nonexistent-verity-test/mapper/control");
        let e = open_dm_at(missing).err().expect("no control node, no DM");
        assert!(matches!(e, DmError::NoDeviceMapper), "{e}");
        assert!(
            e.to_string().contains("/dev/mapper/control is missing"),
            "{e}"
        );
    }

    #[test]
    fn the_real_control_node_decides_the_branch() {
        // Where the node exists, opening it must get past the existence check (Ok as root, a
        // Control error otherwise); where it does not, the missing-node error must be returned.
        let r = open_dm();
        if Path::new(CONTROL).exists() {
            assert!(!matches!(r, Err(DmError::NoDeviceMapper)));
        } else {
            assert!(matches!(r, Err(DmError::NoDeviceMapper)));
        }
    }
}
