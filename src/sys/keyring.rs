//! Kernel keyrings: hands a root-hash signature to dm-verity as a `user` key in the thread keyring.
//!
//! dm-verity's `root_hash_sig_key_desc <desc>` makes the kernel `request_key("user", desc)` from the
//! context of the thread that loads the table and copy the payload (the PKCS#7 signature). So the key
//! is added to the *thread* keyring (invisible to other threads and processes), the table is loaded on
//! the same thread, and the key is unlinked right after, as `veritysetup open` does.
//!
//! The `add_key`/`keyctl` system calls go through the `linux-keyutils` crate; its errors are turned
//! back into the `io::Error` (with the errno) that the callers print.

use linux_keyutils::{Key, KeyError, KeyRing, KeyRingIdentifier};
use std::io;

/// The `io::Error` for the errno that `linux-keyutils` folded into a `KeyError` (it keeps unknown
/// errnos as numbers), so messages and `raw_os_error` stay what the raw syscalls gave.
fn io_error(e: KeyError) -> io::Error {
    let errno = match e {
        KeyError::MissingFileOrDirectory => libc::ENOENT,
        KeyError::PermissionDenied => libc::EPERM,
        KeyError::AccessDenied => libc::EACCES,
        KeyError::QuotaExceeded => libc::EDQUOT,
        KeyError::BadAddress => libc::EFAULT,
        KeyError::InvalidArguments => libc::EINVAL,
        KeyError::KeyExpired => libc::EKEYEXPIRED,
        KeyError::KeyRevoked => libc::EKEYREVOKED,
        KeyError::KeyRejected => libc::EKEYREJECTED,
        KeyError::OutOfMemory => libc::ENOMEM,
        KeyError::KeyDoesNotExist => libc::ENOKEY,
        KeyError::OperationNotSupported => libc::ENOTSUP,
        KeyError::Unknown(n) => n,
        other => return io::Error::other(format!("keyring: {other}")),
    };
    io::Error::from_raw_os_error(errno)
}

/// A `user` key linked into the calling thread's keyring; unlinked on drop.
///
/// Not `Send`: the key lives in this thread's keyring, and the table load that references it must
/// happen on this thread.
#[derive(Debug)]
pub struct ThreadUserKey {
    ring: KeyRing,
    key: Key,
    desc: String,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl ThreadUserKey {
    /// Adds `payload` as a `user` key named `desc` to the thread keyring (created on demand).
    pub fn add(desc: &str, payload: &[u8]) -> io::Result<Self> {
        if desc.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "key description contains a NUL byte",
            ));
        }
        let ring = KeyRing::from_special_id(KeyRingIdentifier::Thread, true).map_err(io_error)?;
        let key = ring.add_key(desc, payload).map_err(io_error)?;
        Ok(ThreadUserKey {
            ring,
            key,
            desc: desc.to_string(),
            _not_send: std::marker::PhantomData,
        })
    }

    /// The key's description, as passed to `root_hash_sig_key_desc`.
    pub fn desc(&self) -> &str {
        &self.desc
    }

    /// The key's serial number.
    pub fn serial(&self) -> i32 {
        self.key.get_id().0
    }
}

impl Drop for ThreadUserKey {
    fn drop(&mut self) {
        // Failure only leaves the key in a keyring that dies with this thread, so it is ignored.
        let _ = self.ring.unlink_key(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linux_keyutils::KeySerialId;

    /// Reads a key's payload back through keyctl(KEYCTL_READ), to check what the kernel stored.
    fn read_key(serial: i32) -> io::Result<Vec<u8>> {
        Key::from_id(KeySerialId(serial))
            .read_to_vec()
            .map_err(io_error)
    }

    #[test]
    fn add_read_and_unlink_thread_key() {
        let payload = b"\x30\x82\x01\x00 not really pkcs7";
        let key = ThreadUserKey::add("verity:unit-test", payload).expect("add_key");
        assert_eq!(key.desc(), "verity:unit-test");
        assert_eq!(read_key(key.serial()).unwrap(), payload);
        let serial = key.serial();
        drop(key);
        // Unlinked from the only keyring holding it: the key is garbage-collected, reads fail.
        let mut gone = false;
        for _ in 0..50 {
            if read_key(serial).is_err() {
                gone = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(gone, "key still readable after unlink");
    }

    #[test]
    fn rejects_nul_in_description() {
        let e = ThreadUserKey::add("a\0b", b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
