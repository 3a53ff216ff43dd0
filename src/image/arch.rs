//! Partition type UUIDs of the Discoverable Partitions Specification (UAPI.2), per architecture,
//! and the mapping from a type UUID back to (architecture, designator). The table was generated
//! from `systemd-id128 show` of systemd 252 and matches spec/systemd.md section 3.1.

use super::gpt::Guid;

/// The type UUIDs of one architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchTypes {
    /// systemd's architecture id (`x86-64`, `arm64`, ...), as in ARCHITECTURE=.
    pub arch: &'static str,
    /// Root file system.
    pub root: Guid,
    /// /usr file system.
    pub usr: Guid,
    /// Verity hash partition of root.
    pub root_verity: Guid,
    /// Verity hash partition of /usr.
    pub usr_verity: Guid,
    /// Verity signature partition of root.
    pub root_verity_sig: Guid,
    /// Verity signature partition of /usr.
    pub usr_verity_sig: Guid,
}

/// Generic Linux data, architecture-independent; a single one may serve as an extension's root.
pub const LINUX_GENERIC: Guid = Guid::from_str_const("0fc63daf-8483-4772-8e79-3d69d8477de4");

/// Every architecture that has root, usr, verity and verity-sig types.
pub const ARCHES: &[ArchTypes] = &[
    ArchTypes {
        arch: "x86-64",
        root: Guid::from_str_const("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
        usr: Guid::from_str_const("8484680c-9521-48c6-9c11-b0720656f69e"),
        root_verity: Guid::from_str_const("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"),
        usr_verity: Guid::from_str_const("77ff5f63-e7b6-4633-acf4-1565b864c0e6"),
        root_verity_sig: Guid::from_str_const("41092b05-9fc8-4523-994f-2def0408b176"),
        usr_verity_sig: Guid::from_str_const("e7bb33fb-06cf-4e81-8273-e543b413e2e2"),
    },
    ArchTypes {
        arch: "x86",
        root: Guid::from_str_const("44479540-f297-41b2-9af7-d131d5f0458a"),
        usr: Guid::from_str_const("75250d76-8cc6-458e-bd66-bd47cc81a812"),
        root_verity: Guid::from_str_const("d13c5d3b-b5d1-422a-b29f-9454fdc89d76"),
        usr_verity: Guid::from_str_const("8f461b0d-14ee-4e81-9aa9-049b6fb97abd"),
        root_verity_sig: Guid::from_str_const("5996fc05-109c-48de-808b-23fa0830b676"),
        usr_verity_sig: Guid::from_str_const("974a71c0-de41-43c3-be5d-5c5ccd1ad2c0"),
    },
    ArchTypes {
        arch: "arm64",
        root: Guid::from_str_const("b921b045-1df0-41c3-af44-4c6f280d3fae"),
        usr: Guid::from_str_const("b0e01050-ee5f-4390-949a-9101b17104e9"),
        root_verity: Guid::from_str_const("df3300ce-d69f-4c92-978c-9bfb0f38d820"),
        usr_verity: Guid::from_str_const("6e11a4e7-fbca-4ded-b9e9-e1a512bb664e"),
        root_verity_sig: Guid::from_str_const("6db69de6-29f4-4758-a7a5-962190f00ce3"),
        usr_verity_sig: Guid::from_str_const("c23ce4ff-44bd-4b00-b2d4-b41b3419e02a"),
    },
    ArchTypes {
        arch: "arm",
        root: Guid::from_str_const("69dad710-2ce4-4e3c-b16c-21a1d49abed3"),
        usr: Guid::from_str_const("7d0359a3-02b3-4f0a-865c-654403e70625"),
        root_verity: Guid::from_str_const("7386cdf2-203c-47a9-a498-f2ecce45a2d6"),
        usr_verity: Guid::from_str_const("c215d751-7bcd-4649-be90-6627490a4c05"),
        root_verity_sig: Guid::from_str_const("42b0455f-eb11-491d-98d3-56145ba9d037"),
        usr_verity_sig: Guid::from_str_const("d7ff812f-37d1-4902-a810-d76ba57b975a"),
    },
    ArchTypes {
        arch: "riscv64",
        root: Guid::from_str_const("72ec70a6-cf74-40e6-bd49-4bda08e8f224"),
        usr: Guid::from_str_const("beaec34b-8442-439b-a40b-984381ed097d"),
        root_verity: Guid::from_str_const("b6ed5582-440b-4209-b8da-5ff7c419ea3d"),
        usr_verity: Guid::from_str_const("8f1056be-9b05-47c4-81d6-be53128e5b54"),
        root_verity_sig: Guid::from_str_const("efe0f087-ea8d-4469-821a-4c2a96a8386a"),
        usr_verity_sig: Guid::from_str_const("d2f9000a-7a18-453f-b5cd-4d32f77a7b32"),
    },
    ArchTypes {
        arch: "riscv32",
        root: Guid::from_str_const("60d5a7fe-8e7d-435c-b714-3dd8162144e1"),
        usr: Guid::from_str_const("b933fb22-5c3f-4f91-af90-e2bb0fa50702"),
        root_verity: Guid::from_str_const("ae0253be-1167-4007-ac68-43926c14c5de"),
        usr_verity: Guid::from_str_const("cb1ee4e3-8cd0-4136-a0a4-aa61a32e8730"),
        root_verity_sig: Guid::from_str_const("3a112a75-8729-4380-b4cf-764d79934448"),
        usr_verity_sig: Guid::from_str_const("c3836a13-3137-45ba-b583-b16c50fe5eb4"),
    },
    ArchTypes {
        arch: "loongarch64",
        root: Guid::from_str_const("77055800-792c-4f94-b39a-98c91b762bb6"),
        usr: Guid::from_str_const("e611c702-575c-4cbe-9a46-434fa0bf7e3f"),
        root_verity: Guid::from_str_const("f3393b22-e9af-4613-a948-9d3bfbd0c535"),
        usr_verity: Guid::from_str_const("f46b2c26-59ae-48f0-9106-c50ed47f673d"),
        root_verity_sig: Guid::from_str_const("5afb67eb-ecc8-4f85-ae8e-ac1e7c50e7d0"),
        usr_verity_sig: Guid::from_str_const("b024f315-d330-444c-8461-44bbde524e99"),
    },
    ArchTypes {
        arch: "ppc64-le",
        root: Guid::from_str_const("c31c45e6-3f39-412e-80fb-4809c4980599"),
        usr: Guid::from_str_const("15bb03af-77e7-4d4a-b12b-c0d084f7491c"),
        root_verity: Guid::from_str_const("906bd944-4589-4aae-a4e4-dd983917446a"),
        usr_verity: Guid::from_str_const("ee2b9983-21e8-4153-86d9-b6901a54d1ce"),
        root_verity_sig: Guid::from_str_const("d4a236e7-e873-4c07-bf1d-bf6cf7f1c3c6"),
        usr_verity_sig: Guid::from_str_const("c8bfbd1e-268e-4521-8bba-bf314c399557"),
    },
    ArchTypes {
        arch: "s390x",
        root: Guid::from_str_const("5eead9a9-fe09-4a1e-a1d7-520d00531306"),
        usr: Guid::from_str_const("8a4f5770-50aa-4ed3-874a-99b710db6fea"),
        root_verity: Guid::from_str_const("b325bfbe-c7be-4ab8-8357-139e652d2f6b"),
        usr_verity: Guid::from_str_const("31741cc4-1a2a-4111-a581-e00b447d2d06"),
        root_verity_sig: Guid::from_str_const("c80187a5-73a3-491a-901a-017c3fa953e9"),
        usr_verity_sig: Guid::from_str_const("3f324816-667b-46ae-86ee-9b0c0c6c11b4"),
    },
    ArchTypes {
        arch: "ia64",
        root: Guid::from_str_const("993d8d3d-f80e-4225-855a-9daf8ed7ea97"),
        usr: Guid::from_str_const("4301d2a6-4e3b-4b2a-bb94-9e0b2c4225ea"),
        root_verity: Guid::from_str_const("86ed10d5-b607-45bb-8957-d350f23d0571"),
        usr_verity: Guid::from_str_const("6a491e03-3be7-4545-8e38-83320e0ea880"),
        root_verity_sig: Guid::from_str_const("e98b36ee-32ba-4882-9b12-0ce14655f46a"),
        usr_verity_sig: Guid::from_str_const("8de58bc2-2a43-460d-b14e-a76e4a17b47f"),
    },
    ArchTypes {
        arch: "alpha",
        root: Guid::from_str_const("6523f8ae-3eb1-4e2a-a05a-18b695ae656f"),
        usr: Guid::from_str_const("e18cf08c-33ec-4c0d-8246-c6c6fb3da024"),
        root_verity: Guid::from_str_const("fc56d9e9-e6e5-4c06-be32-e74407ce09a5"),
        usr_verity: Guid::from_str_const("8cce0d25-c0d0-4a44-bd87-46331bf1df67"),
        root_verity_sig: Guid::from_str_const("d46495b7-a053-414f-80f7-700c99921ef8"),
        usr_verity_sig: Guid::from_str_const("5c6e1c76-076a-457a-a0fe-f3b4cd21ce6e"),
    },
];

/// What a partition is for, independent of architecture (the image-policy designators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// root
    Root,
    /// usr
    Usr,
    /// root-verity
    RootVerity,
    /// usr-verity
    UsrVerity,
    /// root-verity-sig
    RootVeritySig,
    /// usr-verity-sig
    UsrVeritySig,
}

impl Role {
    /// The designator as systemd writes it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Usr => "usr",
            Role::RootVerity => "root-verity",
            Role::UsrVerity => "usr-verity",
            Role::RootVeritySig => "root-verity-sig",
            Role::UsrVeritySig => "usr-verity-sig",
        }
    }
}

impl ArchTypes {
    /// The type UUID for a role.
    pub fn type_for(&self, role: Role) -> Guid {
        match role {
            Role::Root => self.root,
            Role::Usr => self.usr,
            Role::RootVerity => self.root_verity,
            Role::UsrVerity => self.usr_verity,
            Role::RootVeritySig => self.root_verity_sig,
            Role::UsrVeritySig => self.usr_verity_sig,
        }
    }

    /// The label systemd-repart gives a partition of this type by default (`root-x86-64-verity`).
    pub fn label(&self, role: Role) -> String {
        let (base, suffix) = match role {
            Role::Root => ("root", ""),
            Role::Usr => ("usr", ""),
            Role::RootVerity => ("root", "-verity"),
            Role::UsrVerity => ("usr", "-verity"),
            Role::RootVeritySig => ("root", "-verity-sig"),
            Role::UsrVeritySig => ("usr", "-verity-sig"),
        };
        format!("{base}-{}{suffix}", self.arch)
    }
}

/// Looks up an architecture by systemd id.
pub fn by_name(arch: &str) -> Option<&'static ArchTypes> {
    ARCHES.iter().find(|a| a.arch == arch)
}

/// Classifies a type UUID: (architecture, role), or None for anything else.
pub fn classify(t: Guid) -> Option<(&'static str, Role)> {
    const ROLES: [Role; 6] = [
        Role::Root,
        Role::Usr,
        Role::RootVerity,
        Role::UsrVerity,
        Role::RootVeritySig,
        Role::UsrVeritySig,
    ];
    ARCHES.iter().find_map(|a| {
        ROLES
            .iter()
            .find(|r| a.type_for(**r) == t)
            .map(|r| (a.arch, *r))
    })
}

/// systemd's architecture id for a `uname -m` machine string.
pub fn from_uname(machine: &str) -> Option<&'static str> {
    Some(match machine {
        "x86_64" => "x86-64",
        "i386" | "i486" | "i586" | "i686" => "x86",
        "aarch64" => "arm64",
        "aarch64_be" => "arm64-be",
        m if m.starts_with("arm") => "arm",
        "riscv64" => "riscv64",
        "riscv32" => "riscv32",
        "loongarch64" => "loongarch64",
        "ppc64le" => "ppc64-le",
        "s390x" => "s390x",
        "ia64" => "ia64",
        "alpha" => "alpha",
        _ => return None,
    })
}

/// The architecture this binary was built for, as the default for builds and the native one for
/// dissection.
pub fn native() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "loongarch64" => "loongarch64",
        "s390x" => "s390x",
        "powerpc64" => "ppc64-le",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vectors() {
        let x = by_name("x86-64").unwrap();
        assert_eq!(x.root.to_string(), "4f68bce3-e8cd-4db1-96e7-fbcaf984b709");
        assert_eq!(
            x.root_verity_sig.to_string(),
            "41092b05-9fc8-4523-994f-2def0408b176"
        );
        assert_eq!(
            by_name("x86").unwrap().root.to_string(),
            "44479540-f297-41b2-9af7-d131d5f0458a"
        );
        assert_eq!(
            by_name("arm64").unwrap().root.to_string(),
            "b921b045-1df0-41c3-af44-4c6f280d3fae"
        );
        assert_eq!(classify(x.usr_verity), Some(("x86-64", Role::UsrVerity)));
        assert_eq!(classify(LINUX_GENERIC), None);
        assert_eq!(x.label(Role::RootVeritySig), "root-x86-64-verity-sig");
    }
}
