//! The proof token of a successful verification: [`Verified<T>`]. Defined in `image`, beside its
//! only minter, [`mod@super::verify`], which alone can build the [`VerifyKey`] that
//! [`Verified::mint`] takes (a checked image, the token of its activation derived from that, and a
//! directory tree admitted because the image policy explicitly allows unprotected images). The
//! token's field is private too, so no other code (in this crate or outside it) can make one.
//!
//! Outside the verifying module a key cannot be made, so this does not compile (E0423: the key's
//! field is private), nor does building the token directly (E0451), while the same path names
//! compile when no key is built:
//!
//! ```compile_fail,E0423
//! use verity::image::verify::VerifyKey;
//! use verity::image::Verified;
//! let forged: Verified<u32> = Verified::mint(7, VerifyKey(()));
//! ```
//!
//! ```compile_fail,E0451
//! use verity::image::Verified;
//! let forged: Verified<u32> = Verified { inner: 7 };
//! ```
//!
//! ```
//! use verity::image::verify::VerifyKey;
//! use verity::image::Verified;
//! // The same names resolve; only building a key (or a token) is refused.
//! fn takes(_: Option<(VerifyKey, Verified<u32>)>) {}
//! takes(None);
//! ```

use super::verify::VerifyKey;

/// An image (or anything else) whose integrity chain was checked.
#[derive(Debug)]
pub struct Verified<T> {
    inner: T,
}

impl<T> Verified<T> {
    /// Mints a token. Only [`mod@super::verify`] can build the key, after its checks passed.
    pub fn mint(inner: T, _key: VerifyKey) -> Self {
        Self { inner }
    }

    /// Read access; there is no way to get a mutable reference or to rebuild the token.
    pub fn get(&self) -> &T {
        &self.inner
    }
}
