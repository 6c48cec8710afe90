use super::*;

/// A minimal PE file: DOS header pointing at a "PE\0\0" signature.
fn pe() -> Vec<u8> {
    let mut b = vec![0u8; 256];
    b[..2].copy_from_slice(b"MZ");
    b[0x3C] = 0x80;
    b[0x80..0x84].copy_from_slice(b"PE\0\0");
    b
}

/// A stored zip with the given (empty) entries: local headers, then the central directory.
/// With `descriptor`, entries set general-purpose bit 3 and are followed by a data descriptor,
/// as `jar` writes them.
fn zip(names: &[&str], descriptor: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for name in names {
        let offset = u32::try_from(out.len()).unwrap();
        let flags: u16 = if descriptor { 8 } else { 0 };
        out.extend_from_slice(b"PK\x03\x04\x14\0");
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&[0; 18]); // method, time, date, crc, sizes
        out.extend_from_slice(&u16::try_from(name.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&[0, 0]); // extra length
        out.extend_from_slice(name.as_bytes());
        if descriptor {
            out.extend_from_slice(b"PK\x07\x08");
            out.extend_from_slice(&[0; 12]);
        }
        central.extend_from_slice(b"PK\x01\x02\x14\0\x14\0");
        central.extend_from_slice(&flags.to_le_bytes());
        central.extend_from_slice(&[0; 18]); // method, time, date, crc, sizes
        central.extend_from_slice(&u16::try_from(name.len()).unwrap().to_le_bytes());
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 18]);
    out
}

fn msi() -> Vec<u8> {
    let mut b = vec![0u8; 2048];
    b[..8].copy_from_slice(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]);
    // Root directory entry (sector 1 at 512-byte sectors), class id at offset 0x50.
    let clsid = [
        0x84, 0x10, 0x0C, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x46,
    ];
    b[1024 + 0x50..1024 + 0x60].copy_from_slice(&clsid);
    b
}

fn content(b: &[u8]) -> Option<FileType> {
    detect(b, None, None).by_content
}

#[test]
fn recognises_magic_numbers() {
    let mut iso = vec![0u8; 0x9000];
    iso[0x8001..0x8006].copy_from_slice(b"CD001");
    let mut tar = vec![0u8; 512];
    tar[257..263].copy_from_slice(b"ustar\0");
    let mut dmg = vec![0x78, 0xDA, 1, 2, 3];
    dmg.extend_from_slice(&[0; 1000]);
    let mut trailer = vec![0u8; 512];
    trailer[..4].copy_from_slice(b"koly");
    dmg.extend_from_slice(&trailer);
    let cases: Vec<(&str, Vec<u8>, Option<FileType>)> = vec![
        ("pe", pe(), Some(FileType::Exe)),
        ("dos", b"MZ\x90\0".to_vec(), Some(FileType::Exe)),
        ("elf", b"\x7fELF\x02\x01\x01".to_vec(), Some(FileType::Elf)),
        (
            "macho64",
            vec![0xCF, 0xFA, 0xED, 0xFE, 7, 0, 0, 1],
            Some(FileType::MachO),
        ),
        (
            "fat",
            vec![0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 2],
            Some(FileType::MachO),
        ),
        (
            "java class",
            vec![0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 52],
            None,
        ),
        (
            "7z",
            vec![0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C, 0, 4],
            Some(FileType::SevenZip),
        ),
        (
            "rar5",
            b"Rar!\x1a\x07\x01\x00".to_vec(),
            Some(FileType::Rar),
        ),
        ("rar4", b"Rar!\x1a\x07\x00".to_vec(), Some(FileType::Rar)),
        ("gz", vec![0x1F, 0x8B, 0x08, 0], Some(FileType::Gz)),
        ("bz2", b"BZh91AY&SY".to_vec(), Some(FileType::Bz2)),
        (
            "xz",
            vec![0xFD, b'7', b'z', b'X', b'Z', 0, 0],
            Some(FileType::Xz),
        ),
        ("cab", b"MSCF\0\0\0\0\x10".to_vec(), Some(FileType::Cab)),
        ("tar", tar, Some(FileType::Tar)),
        ("iso", iso, Some(FileType::Iso)),
        ("dmg", dmg, Some(FileType::Dmg)),
        (
            "encrypted dmg",
            b"encrcdsa\0\0".to_vec(),
            Some(FileType::Dmg),
        ),
        ("msi", msi(), Some(FileType::Msi)),
        ("zip", zip(&["a.txt"], false), Some(FileType::Zip)),
        ("empty zip", b"PK\x05\x06\0\0".to_vec(), Some(FileType::Zip)),
        ("text", b"hello, world".to_vec(), None),
        ("empty", Vec::new(), None),
        ("one byte", b"M".to_vec(), None),
    ];
    for (label, bytes, want) in cases {
        assert_eq!(content(&bytes), want, "{label}");
    }
    // An OLE file that is not an installer (a .doc) is not msi.
    let mut doc = msi();
    doc[1024 + 0x50] = 0x06;
    assert_eq!(content(&doc), None);
}

#[test]
fn tells_apk_and_jar_from_plain_zip() {
    let apk = zip(
        &["META-INF/MANIFEST.MF", "AndroidManifest.xml", "classes.dex"],
        false,
    );
    assert_eq!(content(&apk), Some(FileType::Apk));
    let jar = zip(&["META-INF/", "META-INF/MANIFEST.MF", "a/B.class"], true);
    assert_eq!(content(&jar), Some(FileType::Jar));
    // Only the central directory at the end names the manifest: found when the end is given.
    let mut big = zip(&["lib/x.so", "AndroidManifest.xml"], false);
    big.splice(30 + 8..30 + 8, vec![b'x'; 2 * ZIP_SCAN]);
    assert_eq!(content(&big), Some(FileType::Apk));
    assert_eq!(content(&big[..ZIP_SCAN]), Some(FileType::Zip));
    // A file that merely mentions the name in its data is still a plain zip.
    let mut mention = zip(&["readme.txt"], false);
    mention.splice(40..40, b"see AndroidManifest.xml".iter().copied());
    assert_eq!(content(&mention), Some(FileType::Zip));
}

#[test]
fn content_wins_over_a_lying_name() {
    let d = detect(&pe(), extension("/files/report.txt"), Some("text/plain"));
    assert_eq!(d.by_content, Some(FileType::Exe));
    assert_eq!(d.by_name, None);
    assert_eq!(d.file_type(), Some(FileType::Exe));
    assert!(FileTypeRule::Type(FileType::Exe).matches(&d));

    // Zip content served as .exe: both views count for rules, content for the answer.
    let d = detect(&zip(&["a"], false), Some("exe"), None);
    assert_eq!(d.file_type(), Some(FileType::Zip));
    assert!(FileTypeRule::Type(FileType::Exe).matches(&d));
    assert!(FileTypeRule::Archive.matches(&d));
}

#[test]
fn names_come_from_extension_then_content_type() {
    let cases = [
        (Some("ps1"), None, Some(FileType::Ps1)),
        (Some("PS1"), Some("text/plain"), Some(FileType::Ps1)),
        (None, Some("application/x-powershell"), Some(FileType::Ps1)),
        (Some("vbs"), None, Some(FileType::Vbs)),
        (Some("cmd"), None, Some(FileType::Bat)),
        (Some("sh"), None, Some(FileType::Sh)),
        (Some("js"), Some("text/javascript"), Some(FileType::Js)),
        (None, Some("text/javascript"), None),
        (Some("apk"), None, Some(FileType::Apk)),
        (
            Some("txt"),
            Some("Application/X-MSDownload; charset=binary"),
            Some(FileType::Exe),
        ),
        (
            Some("msi"),
            Some("application/octet-stream"),
            Some(FileType::Msi),
        ),
        (Some("dmg"), None, Some(FileType::Dmg)),
        (Some("html"), Some("text/html"), None),
        (None, None, None),
    ];
    for (ext, ct, want) in cases {
        assert_eq!(
            detect(b"plain text", ext, ct).by_name,
            want,
            "{ext:?} {ct:?}"
        );
    }
}

#[test]
fn extracts_extensions_from_paths() {
    for (path, want) in [
        ("/dl/setup.EXE?x=1.zip", Some("EXE")),
        ("/a.b/c", None),
        ("/archive.tar.gz", Some("gz")),
        ("/.bashrc", None),
        ("/file.", None),
        ("/", None),
        ("setup.msi#frag", Some("msi")),
    ] {
        assert_eq!(extension(path), want, "{path}");
    }
}

#[test]
fn rules_parse_and_cover_groups() {
    for t in FileType::ALL {
        assert_eq!(FileType::from_name(t.name()), Some(t));
        assert_eq!(FileTypeRule::parse(t.name()), Ok(FileTypeRule::Type(t)));
    }
    assert_eq!(FileTypeRule::parse("Archive"), Ok(FileTypeRule::Archive));
    assert_eq!(FileTypeRule::parse("script").unwrap().to_string(), "script");
    assert_eq!(
        FileTypeRule::parse("mach-o"),
        Ok(FileTypeRule::Type(FileType::MachO))
    );
    let err = FileTypeRule::parse("docx").unwrap_err().to_string();
    assert!(
        err.contains("unknown file type `docx`") && err.contains("mach-o"),
        "{err}"
    );

    for t in [
        FileType::Zip,
        FileType::Apk,
        FileType::Jar,
        FileType::SevenZip,
        FileType::Iso,
    ] {
        assert!(FileTypeRule::Archive.covers(t), "{t}");
    }
    assert!(!FileTypeRule::Archive.covers(FileType::Exe));
    assert!(FileTypeRule::Script.covers(FileType::Ps1));
    assert!(!FileTypeRule::Script.covers(FileType::Exe));

    let d = detect(b"Write-Host hi", Some("ps1"), Some("text/plain"));
    let rules = [FileTypeRule::Type(FileType::Exe), FileTypeRule::Script];
    assert_eq!(
        FileTypeRule::first_match(&rules, &d),
        Some(FileTypeRule::Script)
    );
    assert_eq!(FileTypeRule::first_match(&rules[..1], &d), None);
}

#[test]
fn truncated_headers_never_panic() {
    let samples = [
        pe(),
        msi(),
        zip(&["AndroidManifest.xml"], true),
        b"BZh9".to_vec(),
        vec![0xCA, 0xFE, 0xBA, 0xBE, 0, 0],
    ];
    for sample in samples {
        for end in 0..=sample.len() {
            let _ = detect(&sample[..end], Some(""), Some(""));
        }
    }
}
