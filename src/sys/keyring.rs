//! Kernel keyrings: hands a root-hash signature to dm-verity as a `user` key in the thread keyring.
//!
//! dm-verity's `root_hash_sig_key_desc <desc>` makes the kernel `request_key("user", desc)` from the
//! context of the thread that loads the table and copy the payload (the PKCS#7 signature). So the key
//! is added to the *thread* keyring (invisible to other threads and processes), the table is loaded on
//! the same thread, and the key is unlinked right after, as `veritysetup open` does.
//!
//! There is no rustix wrapper for `add_key`/`keyctl`, so these go through `libc::syscall`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;

/// `KEY_SPEC_THREAD_KEYRING` from linux/keyctl.h: the calling thread's keyring, created on demand.
const KEY_SPEC_THREAD_KEYRING: i32 = -1;
/// `KEYCTL_UNLINK` from linux/keyctl.h.
const KEYCTL_UNLINK: libc::c_long = 9;

/// A `user` key linked into the calling thread's keyring; unlinked on drop.
///
/// Not `Send`: the key lives in this thread's keyring, and the table load that references it must
/// happen on this thread.
#[derive(Debug)]
pub struct ThreadUserKey {
    serial: i32,
    desc: String,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl ThreadUserKey {
    /// Adds `payload` as a `user` key named `desc` to the thread keyring.
    pub fn add(desc: &str, payload: &[u8]) -> io::Result<Self> {
        let ty = CString::new("user").expect("static string has no NUL");
        let d = CString::new(desc).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "key description contains a NUL byte",
            )
        })?;
        // SAFETY: add_key(2) reads two NUL-terminated strings and `payload.len()` bytes from
        // `payload`; all three pointers are valid for the duration of the call and nothing keeps
        // them afterwards (the kernel copies the payload).
        let r = unsafe {
            libc::syscall(
                libc::SYS_add_key,
                ty.as_ptr(),
                d.as_ptr(),
                payload.as_ptr() as *const libc::c_void,
                payload.len(),
                KEY_SPEC_THREAD_KEYRING,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ThreadUserKey {
            serial: r as i32,
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
        self.serial
    }
}

impl Drop for ThreadUserKey {
    fn drop(&mut self) {
        // SAFETY: keyctl(KEYCTL_UNLINK, key, keyring) takes two integers and touches no user memory.
        // Failure only leaves the key in a keyring that dies with this thread, so it is ignored.
        unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_UNLINK,
                self.serial,
                KEY_SPEC_THREAD_KEYRING,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a key's payload back through keyctl(KEYCTL_READ), to check what the kernel stored.
    fn read_key(serial: i32) -> io::Result<Vec<u8>> {
        const KEYCTL_READ: libc::c_long = 11;
        let mut buf = vec![0u8; 4096];
        // SAFETY: KEYCTL_READ writes at most `buf.len()` bytes into `buf`, which is valid and
        // exclusively borrowed for the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_READ,
                serial,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(r as usize);
        Ok(buf)
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
