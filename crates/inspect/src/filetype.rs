//! File types (`block.file_types`): what a body is, by its content (magic bytes) and by its name
//! (the URL's extension or the `Content-Type`).
//!
//! [`detect`] reports both views in a [`Detected`]; a [`FileTypeRule`] matches if either does,
//! so renaming an executable to `.txt` and serving it as `text/plain` does not get it through
//! (the content says `exe`), and neither does an extension the content cannot confirm (scripts
//! are plain text: `ps1`, `vbs`, `js`, `bat` and `sh` are known by name only). Where both are
//! known, [`Detected::file_type`] prefers the content: it is what the client will execute.
//!
//! Magic numbers are checked by hand rather than through a general sniffing crate: the list is
//! short, and the interesting cases (MSI inside an OLE compound file, APK and JAR inside a zip,
//! fat Mach-O against Java class files) need more than a magic number anyway.
//!
//! This module does not read bodies; the caller hands in the first bytes (or the whole body).

use std::fmt;

mod sniff;

#[cfg(test)]
use sniff::ZIP_SCAN;

/// A concrete file type that sluice can recognise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileType {
    /// Windows PE or DOS executable (`MZ`): `.exe`, `.dll`, `.scr`, …
    Exe,
    /// Windows Installer package: an OLE compound file whose root is the MSI class.
    Msi,
    /// Apple disk image (UDIF `koly` trailer, or an encrypted image's header).
    Dmg,
    /// Android package: a zip with `AndroidManifest.xml` or `classes.dex`.
    Apk,
    /// Java archive: a zip with `META-INF/MANIFEST.MF`.
    Jar,
    /// Any other zip archive.
    Zip,
    /// ELF executable or shared object (Linux, BSD).
    Elf,
    /// Mach-O executable (macOS), thin or universal.
    MachO,
    /// 7-Zip archive.
    SevenZip,
    /// RAR archive (v4 or v5).
    Rar,
    /// gzip stream.
    Gz,
    /// bzip2 stream.
    Bz2,
    /// xz stream.
    Xz,
    /// POSIX tar archive.
    Tar,
    /// Microsoft cabinet archive.
    Cab,
    /// ISO 9660 disk image.
    Iso,
    /// PowerShell script (by name only).
    Ps1,
    /// VBScript (by name only).
    Vbs,
    /// JavaScript / JScript file (by name only).
    Js,
    /// Windows batch file (by name only).
    Bat,
    /// Shell script (by name only).
    Sh,
}

/// What a `block.file_types` entry names: one type, or a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileTypeRule {
    /// One file type.
    Type(FileType),
    /// `archive`: every type for which [`FileType::is_archive`] holds.
    Archive,
    /// `script`: every type for which [`FileType::is_script`] holds.
    Script,
}

/// What a body looks like, by content and by name. Either may be unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Detected {
    /// The type its bytes show (magic numbers, container entries).
    pub by_content: Option<FileType>,
    /// The type its URL extension says, or else its `Content-Type`.
    pub by_name: Option<FileType>,
}

/// A `block.file_types` entry that names no known type or group.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("unknown file type `{0}`; known: {names}, archive, script", names = FileType::ALL.map(FileType::name).join(", "))]
pub struct UnknownFileType(pub String);

/// Bytes to hand to [`detect`] for every type it can see in a prefix: an ISO 9660 volume
/// descriptor sits at 32 KiB; the zip entry names of APK and JAR come early or, in the central
/// directory, at the end (so the whole body is better still).
pub const SNIFF_LEN: usize = 64 * 1024;

// === impl FileType ===

impl FileType {
    /// Every type, in declaration order.
    pub const ALL: [Self; 21] = [
        Self::Exe,
        Self::Msi,
        Self::Dmg,
        Self::Apk,
        Self::Jar,
        Self::Zip,
        Self::Elf,
        Self::MachO,
        Self::SevenZip,
        Self::Rar,
        Self::Gz,
        Self::Bz2,
        Self::Xz,
        Self::Tar,
        Self::Cab,
        Self::Iso,
        Self::Ps1,
        Self::Vbs,
        Self::Js,
        Self::Bat,
        Self::Sh,
    ];

    /// The name used in configuration and logs (`exe`, `mach-o`, `7z`, …).
    pub fn name(self) -> &'static str {
        self.info().0
    }

    /// The type of that name (ASCII case-insensitive), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Whether the type is an archive or disk image, i.e. a container of other files (zip and
    /// its APK/JAR forms, 7z, rar, gz, bz2, xz, tar, cab, iso, dmg).
    pub fn is_archive(self) -> bool {
        matches!(
            self,
            Self::Zip
                | Self::Apk
                | Self::Jar
                | Self::SevenZip
                | Self::Rar
                | Self::Gz
                | Self::Bz2
                | Self::Xz
                | Self::Tar
                | Self::Cab
                | Self::Iso
                | Self::Dmg
        )
    }

    /// Whether the type is a script (ps1, vbs, js, bat, sh). Scripts are plain text, so they are
    /// only ever known by name; note that `js` includes the scripts of ordinary web pages.
    pub fn is_script(self) -> bool {
        matches!(
            self,
            Self::Ps1 | Self::Vbs | Self::Js | Self::Bat | Self::Sh
        )
    }

    /// The type a file extension (without the dot, any case) stands for.
    pub fn from_extension(ext: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| {
            t.info()
                .1
                .iter()
                .any(|known| known.eq_ignore_ascii_case(ext))
        })
    }

    /// The type a `Content-Type` value stands for (parameters ignored, any case). Generic types
    /// such as `application/octet-stream` stand for none.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        Self::ALL.into_iter().find(|t| {
            t.info()
                .2
                .iter()
                .any(|known| known.eq_ignore_ascii_case(essence))
        })
    }

    /// Name, extensions, content types.
    fn info(
        self,
    ) -> (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    ) {
        match self {
            Self::Exe => (
                "exe",
                &["exe", "dll", "scr", "com", "cpl", "sys"],
                &[
                    "application/x-msdownload",
                    "application/x-dosexec",
                    "application/x-msdos-program",
                    "application/x-ms-dos-executable",
                    "application/vnd.microsoft.portable-executable",
                ],
            ),
            Self::Msi => (
                "msi",
                &["msi", "msp"],
                &["application/x-msi", "application/x-ms-installer"],
            ),
            Self::Dmg => ("dmg", &["dmg"], &["application/x-apple-diskimage"]),
            Self::Apk => (
                "apk",
                &["apk"],
                &["application/vnd.android.package-archive"],
            ),
            Self::Jar => (
                "jar",
                &["jar", "war", "ear"],
                &["application/java-archive", "application/x-java-archive"],
            ),
            Self::Zip => (
                "zip",
                &["zip"],
                &["application/zip", "application/x-zip-compressed"],
            ),
            Self::Elf => (
                "elf",
                &["elf"],
                &[
                    "application/x-elf",
                    "application/x-executable",
                    "application/x-sharedlib",
                ],
            ),
            Self::MachO => ("mach-o", &["dylib"], &["application/x-mach-binary"]),
            Self::SevenZip => ("7z", &["7z"], &["application/x-7z-compressed"]),
            Self::Rar => (
                "rar",
                &["rar"],
                &[
                    "application/vnd.rar",
                    "application/x-rar-compressed",
                    "application/x-rar",
                ],
            ),
            Self::Gz => (
                "gz",
                &["gz", "tgz"],
                &["application/gzip", "application/x-gzip"],
            ),
            Self::Bz2 => ("bz2", &["bz2", "tbz2"], &["application/x-bzip2"]),
            Self::Xz => ("xz", &["xz", "txz"], &["application/x-xz"]),
            Self::Tar => ("tar", &["tar"], &["application/x-tar"]),
            Self::Cab => ("cab", &["cab"], &["application/vnd.ms-cab-compressed"]),
            Self::Iso => ("iso", &["iso"], &["application/x-iso9660-image"]),
            Self::Ps1 => (
                "ps1",
                &["ps1", "psm1", "psd1"],
                &["application/x-powershell"],
            ),
            Self::Vbs => (
                "vbs",
                &["vbs", "vbe"],
                &["application/x-vbscript", "text/vbscript"],
            ),
            Self::Js => ("js", &["js", "jse"], &[]),
            Self::Bat => (
                "bat",
                &["bat", "cmd"],
                &["application/x-bat", "application/bat"],
            ),
            Self::Sh => (
                "sh",
                &["sh", "bash"],
                &[
                    "application/x-sh",
                    "application/x-shellscript",
                    "text/x-shellscript",
                ],
            ),
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// === impl FileTypeRule ===

impl FileTypeRule {
    /// Parses a type name, `archive` or `script` (ASCII case-insensitive).
    pub fn parse(name: &str) -> Result<Self, UnknownFileType> {
        if name.eq_ignore_ascii_case("archive") {
            Ok(Self::Archive)
        } else if name.eq_ignore_ascii_case("script") {
            Ok(Self::Script)
        } else {
            FileType::from_name(name)
                .map(Self::Type)
                .ok_or_else(|| UnknownFileType(name.to_string()))
        }
    }

    /// The name used in configuration and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Type(t) => t.name(),
            Self::Archive => "archive",
            Self::Script => "script",
        }
    }

    /// Whether the rule covers `file_type`.
    pub fn covers(self, file_type: FileType) -> bool {
        match self {
            Self::Type(t) => t == file_type,
            Self::Archive => file_type.is_archive(),
            Self::Script => file_type.is_script(),
        }
    }

    /// Whether the rule matches: by content or by name.
    pub fn matches(self, detected: &Detected) -> bool {
        [detected.by_content, detected.by_name]
            .into_iter()
            .flatten()
            .any(|t| self.covers(t))
    }

    /// The first rule of `rules` that matches, for the log.
    pub fn first_match(rules: &[Self], detected: &Detected) -> Option<Self> {
        rules.iter().copied().find(|r| r.matches(detected))
    }
}

impl fmt::Display for FileTypeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FileTypeRule {
    type Err = UnknownFileType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

// === impl Detected ===

impl Detected {
    /// The best single answer: the content's type, else the name's.
    pub fn file_type(&self) -> Option<FileType> {
        self.by_content.or(self.by_name)
    }
}

// === detection ===

/// Detects a body's type from its first bytes (up to [`SNIFF_LEN`], or the whole body — a DMG
/// is only recognised by content when its end is included), the URL path's extension (see
/// [`extension`]) and the `Content-Type`. The name view takes the extension when it names a
/// type, else the `Content-Type`.
pub fn detect(first_bytes: &[u8], path_ext: Option<&str>, content_type: Option<&str>) -> Detected {
    Detected {
        by_content: sniff::sniff(first_bytes),
        by_name: path_ext
            .and_then(FileType::from_extension)
            .or_else(|| content_type.and_then(FileType::from_content_type)),
    }
}

/// The extension of a URL path's last segment (`/dl/setup.EXE?x` → `EXE`), if any.
pub fn extension(path: &str) -> Option<&str> {
    let path = path.find(['?', '#']).map_or(path, |end| &path[..end]);
    let segment = path.rsplit('/').next().unwrap_or(path);
    match segment.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => Some(ext),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
