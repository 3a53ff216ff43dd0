//! Extension and root images: DDI (GPT) dissection and building, the signature partition, sidecar
//! images, extension-release matching and image policy.
//!
//! Pure core: [`gpt`], [`sigpart`], [`release`], [`policy`], [`arch`]. I/O edge: [`ddi`] (dissect a
//! DDI from an open file), [`sidecar`], [`build`] (mkfs.erofs/mksquashfs children), [`fsread`]
//! (file-system types), [`fs`] (bounded erofs/squashfs readers that read release files out of a
//! verified image through authenticated blocks, without mounting or copying it), [`trust`], and
//! [`mod@verify`], the only place that mints [`Verified`] tokens ([`token`]; for images, for their
//! activation, and for directory trees the image policy admits); [`info`] is what those tokens
//! carry.
//!
//! An image is opened once ([`Dissected::open`] takes a [`std::fs::File`]); everything afterwards,
//! including the [`verify::VerifiedImage`] handed to the merge pipeline, reads that descriptor.
//!
//! Layer L8 (`tests/layering.rs`): the first steps of the pipeline (open, dissect, signature and
//! policy, integrity, release file), over `verity`, `sign`, `gate`, `io` and `sys`. It knows
//! nothing of measurement, rollback, merging or soft reboot; what those share with it lives here
//! (versions: [`version`]; what makes a tree an OS: [`ostree`]) or in `gate` (the event vocabulary).

pub mod arch;
pub mod build;
mod content;
pub mod ddi;
pub mod fs;
pub mod fsread;
pub mod gpt;
pub mod info;
pub mod ostree;
pub mod policy;
pub mod release;
pub mod sidecar;
pub mod sigpart;
pub mod stamp;
pub mod token;
pub mod tree_release;
pub mod treedigest;
pub mod trust;
pub mod verify;
pub mod version;

pub use token::Verified;

pub use ddi::{DissectError, DissectOptions, Dissected, Layout};
pub use info::{AdmitAs, ImageInfo, ImageKind};
pub use verify::{verify, Report, VerifiedImage, VerifyOptions};

/// Which kind of extension an image is: the one class type of the crate (merge, the boot config
/// and its report use it; rollback floors add `root` in [`crate::rollback::Class`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// A system extension (extends /usr and /opt).
    Sysext,
    /// A configuration extension (extends /etc).
    Confext,
}

impl Class {
    /// Parses `sysext` or `confext`.
    pub fn from_name(s: &str) -> Option<Class> {
        match s {
            "sysext" => Some(Class::Sysext),
            "confext" => Some(Class::Confext),
            _ => None,
        }
    }

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Class::Sysext => "sysext",
            Class::Confext => "confext",
        }
    }

    /// The hierarchies this class may overlay, absolute.
    pub fn hierarchies(self) -> &'static [&'static str] {
        match self {
            Class::Sysext => &["/usr", "/opt"],
            Class::Confext => &["/etc"],
        }
    }

    /// Where extension-release files live inside an image.
    pub fn release_dir(self) -> &'static str {
        match self {
            Class::Sysext => "usr/lib/extension-release.d",
            Class::Confext => "etc/extension-release.d",
        }
    }

    /// The default PCR (DESIGN.md section 5).
    pub fn default_pcr(self) -> u32 {
        match self {
            Class::Sysext => 13,
            Class::Confext => 12,
        }
    }

    /// The class a file name asks for (`foo.sysext.raw`, `foo.confext.raw`), if any.
    pub fn from_file_name(name: &str) -> Option<Class> {
        if name.ends_with(".sysext.raw") {
            Some(Class::Sysext)
        } else if name.ends_with(".confext.raw") {
            Some(Class::Confext)
        } else {
            None
        }
    }
}

/// How a verified image is activated (`--integrity`, boot.toml's `integrity`): the one
/// definition the command line, the boot config and the admission pipeline share.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Integrity {
    /// A read-only dm-verity table (needs `/dev/mapper/control` and a kernel activator).
    Kernel,
    /// Verify the whole image into a sealed memfd and loop-mount that.
    Userspace,
    /// Kernel when `/dev/mapper/control` exists and an activator is available, else userspace.
    #[default]
    Auto,
}

impl Integrity {
    /// The lower-case name (`kernel`, `userspace`, `auto`).
    pub fn name(self) -> &'static str {
        match self {
            Integrity::Kernel => "kernel",
            Integrity::Userspace => "userspace",
            Integrity::Auto => "auto",
        }
    }

    /// Whether images are activated by the kernel, given whether a kernel activator is
    /// available: `auto` picks the kernel only with one and `/dev/mapper/control`.
    pub fn uses_kernel(self, activator: bool) -> bool {
        match self {
            Integrity::Kernel => true,
            Integrity::Userspace => false,
            Integrity::Auto => activator && std::path::Path::new("/dev/mapper/control").exists(),
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
