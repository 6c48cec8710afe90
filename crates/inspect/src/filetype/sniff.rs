//! Magic numbers and container peeks: the content half of file-type detection.

use memchr::memmem;

use super::FileType;

/// How far into each end of a zip the entry names are looked for.
pub(super) const ZIP_SCAN: usize = 64 * 1024;

/// The type the bytes show, strongest evidence first.
pub(super) fn sniff(b: &[u8]) -> Option<FileType> {
    const OLE: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    let simple: &[(&[u8], FileType)] = &[
        (b"MZ", FileType::Exe),
        (b"\x7fELF", FileType::Elf),
        (&[0xFE, 0xED, 0xFA, 0xCE], FileType::MachO),
        (&[0xFE, 0xED, 0xFA, 0xCF], FileType::MachO),
        (&[0xCE, 0xFA, 0xED, 0xFE], FileType::MachO),
        (&[0xCF, 0xFA, 0xED, 0xFE], FileType::MachO),
        (&[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C], FileType::SevenZip),
        (b"Rar!\x1a\x07", FileType::Rar),
        (&[0x1F, 0x8B, 0x08], FileType::Gz),
        (&[0xFD, b'7', b'z', b'X', b'Z', 0x00], FileType::Xz),
        (b"MSCF\0\0\0\0", FileType::Cab),
        (b"encrcdsa", FileType::Dmg),
        (b"cdsaencr", FileType::Dmg),
    ];
    if let Some((_, t)) = simple.iter().find(|(magic, _)| b.starts_with(magic)) {
        return Some(*t);
    }
    if b.starts_with(b"PK\x03\x04") || b.starts_with(b"PK\x05\x06") || b.starts_with(b"PK\x07\x08")
    {
        return Some(zip_kind(b));
    }
    if b.starts_with(OLE) {
        return is_msi(b).then_some(FileType::Msi);
    }
    if is_fat_mach_o(b) {
        return Some(FileType::MachO);
    }
    if b.len() >= 4 && b.starts_with(b"BZh") && (b'1'..=b'9').contains(&b[3]) {
        return Some(FileType::Bz2);
    }
    if b.get(257..262) == Some(b"ustar") {
        return Some(FileType::Tar);
    }
    // ISO 9660 §8.1: the volume descriptor set starts at sector 16 (byte 32768), each
    // descriptor with "CD001" at offset 1; also look at the next two descriptors.
    if [0x8001, 0x8801, 0x9001]
        .iter()
        .any(|&at| b.get(at..at + 5) == Some(b"CD001"))
    {
        return Some(FileType::Iso);
    }
    // UDIF: a 512-byte trailer starting with "koly" ends the image.
    if b.len() >= 512 && b[b.len() - 512..].starts_with(b"koly") {
        return Some(FileType::Dmg);
    }
    None
}

/// `CA FE BA BE` is also the Java class file magic; a universal binary follows it with its
/// architecture count (a handful), a class file with its version (major ≥ 45).
fn is_fat_mach_o(b: &[u8]) -> bool {
    match b.get(..8) {
        Some(&[0xCA, 0xFE, 0xBA, 0xBE, n0, n1, n2, n3]) => {
            (1..45).contains(&u32::from_be_bytes([n0, n1, n2, n3]))
        }
        _ => false,
    }
}

/// An OLE compound file is an MSI when its root storage has the Windows Installer class
/// `{000C1084-0000-0000-C000-000000000046}` (stored little-endian in the directory entry).
/// Found by searching the available bytes rather than walking the FAT: the root entry is in the
/// first directory sector, early in any real package.
fn is_msi(b: &[u8]) -> bool {
    const MSI_CLSID: [u8; 16] = [
        0x84, 0x10, 0x0C, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x46,
    ];
    memmem::find(b, &MSI_CLSID).is_some()
}

/// Zip, APK or JAR, from the entry names in the local headers near the start and the central
/// directory near the end (when the whole body was given).
fn zip_kind(b: &[u8]) -> FileType {
    let head = &b[..b.len().min(ZIP_SCAN)];
    let tail = &b[b.len().saturating_sub(ZIP_SCAN)..];
    let mut jar = false;
    for name in zip_names(head, b"PK\x03\x04", 26, 30).chain(zip_names(tail, b"PK\x01\x02", 28, 46))
    {
        match name {
            b"AndroidManifest.xml" | b"classes.dex" => return FileType::Apk,
            b"META-INF/MANIFEST.MF" => jar = true,
            _ => {}
        }
    }
    if jar {
        FileType::Jar
    } else {
        FileType::Zip
    }
}

/// The file names of the zip headers with signature `sig` in `b` (APPNOTE 4.3.7 local header:
/// name length at 26, name at 30; 4.3.12 central header: at 28 and 46). Headers are found by
/// signature, so entries with data descriptors (no size up front) do not stop the walk; a
/// stray signature in compressed data yields a garbage name, which matches nothing.
fn zip_names<'a>(
    b: &'a [u8],
    sig: &'static [u8],
    len_at: usize,
    name_at: usize,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    memmem::find_iter(b, sig).filter_map(move |at| {
        let len = b.get(at + len_at..at + len_at + 2)?;
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        b.get(at + name_at..at + name_at + len)
    })
}
