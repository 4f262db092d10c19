//! Unpacking a skill archive (`.zip`, `.tar.gz`, `.tgz`) into a fresh
//! folder, refusing whatever could reach outside it or is not a plain file:
//! absolute paths, `..`, links (symbolic and hard), devices, FIFOs. Nothing
//! in the archive is run; the folder it gives is then installed like any
//! other (copied, validated, hashed).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

use super::{MAX_FILE_BYTES, MAX_TREE_BYTES, MAX_TREE_FILES};
use crate::home::create_private_dir;

/// The archive formats `skills install` unpacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Zip,
    TarGz,
}

impl Format {
    /// The format named by `path`'s extension.
    pub fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".zip") {
            Some(Self::Zip)
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(Self::TarGz)
        } else {
            None
        }
    }

    /// The file name without the archive's extension (`pdf.tar.gz` → `pdf`;
    /// `skill` when that leaves nothing usable, such as `..`).
    pub fn stem(self, path: &Path) -> String {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lower = name.to_ascii_lowercase();
        let cut = [".tar.gz", ".tgz", ".zip"]
            .iter()
            .find(|suffix| lower.ends_with(*suffix))
            .map_or(name.len(), |suffix| name.len() - suffix.len());
        let stem = &name[..cut];
        if stem.is_empty() || stem.starts_with('.') || stem.contains('/') {
            "skill".to_owned()
        } else {
            stem.to_owned()
        }
    }
}

/// Unpack `archive` into `into` (created, private). Errors name the
/// archive and the entry.
pub fn unpack(archive: &Path, format: Format, into: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(archive)
        .with_context(|| format!("cannot open the archive {}", archive.display()))?;
    create_private_dir(into)?;
    let mut budget = Budget::default();
    let result = match format {
        Format::TarGz => unpack_tar(file, into, &mut budget),
        Format::Zip => unpack_zip(file, into, &mut budget),
    };
    result.with_context(|| format!("the archive {}", archive.display()))
}

/// What an archive may unpack to, in all.
#[derive(Default)]
struct Budget {
    files: usize,
    bytes: u64,
}

impl Budget {
    /// Count one more file of `size` bytes (0 for a folder).
    fn take(&mut self, name: &str, size: u64) -> anyhow::Result<()> {
        if size > MAX_FILE_BYTES {
            bail!("entry {name:?} is larger than {} MiB", MAX_FILE_BYTES >> 20);
        }
        self.files += 1;
        self.bytes = self.bytes.saturating_add(size);
        if self.files > MAX_TREE_FILES {
            bail!("it holds more than {MAX_TREE_FILES} files");
        }
        if self.bytes > MAX_TREE_BYTES {
            bail!("it unpacks to more than {} MiB", MAX_TREE_BYTES >> 20);
        }
        Ok(())
    }
}

/// `name` as a path inside the folder being unpacked: plain components
/// only. `None` for an entry that names the folder itself (`./`).
fn inside(name: &str) -> anyhow::Result<Option<PathBuf>> {
    let shown = crate::untrusted_text::log_line(name);
    if name.contains('\0') || name.chars().any(char::is_control) {
        bail!("entry {shown:?} has control characters in its name");
    }
    let mut path = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                bail!("entry {shown:?} points outside the archive's folder")
            }
        }
    }
    Ok((!path.as_os_str().is_empty()).then_some(path))
}

/// Write one regular file of `size` bytes, never over an existing one (an
/// archive naming a file twice is refused), and refuse an entry whose data
/// is not the size its header gave.
fn write_file(
    into: &Path,
    relative: &Path,
    size: u64,
    mut reader: impl Read,
    shown: &str,
) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = into.join(relative);
    if let Some(parent) = path.parent() {
        create_dirs(into, parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .with_context(|| format!("entry {shown:?}: cannot create it (named twice?)"))?;
    let copied = std::io::copy(&mut (&mut reader).take(size + 1), &mut file)
        .with_context(|| format!("entry {shown:?}: cannot unpack it"))?;
    if copied != size {
        bail!("entry {shown:?} holds {copied} bytes, not the {size} its header says");
    }
    Ok(())
}

/// Create `dir` and its parents below `into`, private; each must be a real
/// folder (never a link: none is ever made here).
fn create_dirs(into: &Path, dir: &Path) -> anyhow::Result<()> {
    let relative = dir.strip_prefix(into).unwrap_or(Path::new(""));
    let mut current = into.to_owned();
    for part in relative.components() {
        current.push(part);
        match std::fs::symlink_metadata(&current) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => bail!(
                "{} is both a file and a folder in the archive",
                relative.display()
            ),
            Err(_) => create_private_dir(&current)?,
        }
    }
    Ok(())
}

fn unpack_tar(file: std::fs::File, into: &Path, budget: &mut Budget) -> anyhow::Result<()> {
    use tar::EntryType;
    // Bounded as it is read: the headers that hold long names are read
    // into memory whole, and would otherwise be bounded by nothing.
    let decompressed = flate2::read::GzDecoder::new(file).take(MAX_TREE_BYTES + (64 << 20));
    let mut archive = tar::Archive::new(decompressed);
    for entry in archive
        .entries()
        .context("it is not a gzip-compressed tar archive")?
    {
        let entry = entry.context("it is damaged")?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let shown = crate::untrusted_text::log_line(&name);
        let kind = entry.header().entry_type();
        let Some(relative) = inside(&name)? else {
            continue;
        };
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.size();
                budget.take(&shown, size)?;
                write_file(into, &relative, size, entry, &shown)?;
            }
            EntryType::Directory => {
                budget.take(&shown, 0)?;
                create_dirs(into, &into.join(&relative))?
            }
            EntryType::XGlobalHeader => {}
            EntryType::Symlink | EntryType::Link => {
                bail!(
                    "entry {shown:?} is a link; a skill archive must hold plain files and folders"
                )
            }
            other => bail!(
                "entry {shown:?} is a {other:?} entry; a skill archive must hold plain files and folders"
            ),
        }
    }
    Ok(())
}

fn unpack_zip(file: std::fs::File, into: &Path, budget: &mut Budget) -> anyhow::Result<()> {
    let mut archive = zip::ZipArchive::new(file).context("it is not a zip archive")?;
    for index in 0..archive.len() {
        let entry = archive.by_index(index).context("it is damaged")?;
        let name = match entry.name() {
            Ok(name) => name.into_owned(),
            Err(_) => bail!("entry {index} has a name that is not UTF-8"),
        };
        let shown = crate::untrusted_text::log_line(&name);
        let Some(relative) = inside(&name)? else {
            continue;
        };
        if entry.is_symlink() {
            bail!("entry {shown:?} is a link; a skill archive must hold plain files and folders");
        }
        // Unix file types other than regular files and folders (devices,
        // FIFOs, sockets) ride in the external attributes.
        const FILE_TYPE: u32 = 0o170000;
        let unix_type = entry.unix_mode().map(|mode| mode & FILE_TYPE);
        if entry.is_dir() {
            budget.take(&shown, 0)?;
            create_dirs(into, &into.join(&relative))?;
        } else if matches!(unix_type, None | Some(0) | Some(0o100000)) {
            let size = entry.size();
            budget.take(&shown, size)?;
            write_file(into, &relative, size, entry, &shown)?;
        } else {
            bail!(
                "entry {shown:?} is not a plain file; a skill archive must hold plain files and folders"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_stay_inside() {
        assert_eq!(inside("a/b.md").unwrap(), Some(PathBuf::from("a/b.md")));
        assert_eq!(inside("./a/./b.md").unwrap(), Some(PathBuf::from("a/b.md")));
        assert_eq!(inside("./").unwrap(), None);
        for bad in ["../x", "a/../../x", "/etc/passwd", "a/\u{1b}[2J"] {
            assert!(inside(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Format::of(Path::new("x/PDF.TAR.GZ")), Some(Format::TarGz));
        assert_eq!(Format::TarGz.stem(Path::new("x/pdf.tar.gz")), "pdf");
        assert_eq!(Format::Zip.stem(Path::new("pdf-1.zip")), "pdf-1");
        assert_eq!(Format::of(Path::new("pdf")), None);
        assert_eq!(Format::Zip.stem(Path::new("x/...zip")), "skill");
        assert_eq!(Format::Zip.stem(Path::new(".zip")), "skill");
    }

    fn tar_gz(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, kind, bytes, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            // Written raw: the builder's own checks would refuse `..`.
            let raw = header.as_old_mut();
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            header.set_cksum();
            builder.append(&header, *bytes).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn unpack_bytes(bytes: &[u8], format: Format) -> (tempfile::TempDir, anyhow::Result<()>) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join(match format {
            Format::Zip => "s.zip",
            Format::TarGz => "s.tar.gz",
        });
        std::fs::write(&archive, bytes).unwrap();
        let result = unpack(&archive, format, &dir.path().join("out"));
        (dir, result)
    }

    #[test]
    fn a_tar_gz_unpacks_plain_files_and_refuses_the_rest() {
        use tar::EntryType::{Block, Directory, Fifo, Link, Regular, Symlink};
        let good = tar_gz(&[
            ("s/", Directory, b"", None),
            ("s/SKILL.md", Regular, b"---\n", None),
            ("s/references/a.md", Regular, b"a", None),
        ]);
        let (dir, result) = unpack_bytes(&good, Format::TarGz);
        result.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out/s/references/a.md")).unwrap(),
            "a"
        );
        for (entries, expected) in [
            (
                vec![("../evil", Regular, &b"x"[..], None)],
                "points outside",
            ),
            (
                vec![("s/link", Symlink, &b""[..], Some("/etc"))],
                "is a link",
            ),
            (vec![("s/hard", Link, &b""[..], Some("s/a"))], "is a link"),
            (vec![("s/fifo", Fifo, &b""[..], None)], "plain files"),
            (vec![("s/disk", Block, &b""[..], None)], "plain files"),
            (
                vec![
                    ("s/a", Regular, &b"1"[..], None),
                    ("s/a", Regular, &b"2"[..], None),
                ],
                "named twice",
            ),
        ] {
            let (dir, result) = unpack_bytes(&tar_gz(&entries), Format::TarGz);
            let error = format!("{:#}", result.unwrap_err());
            assert!(error.contains(expected), "{expected}: {error}");
            assert!(error.contains("s.tar.gz"), "{error}");
            assert!(!dir.path().join("evil").exists());
        }
        let (_dir, result) = unpack_bytes(b"not gzip at all", Format::TarGz);
        assert!(result.is_err());
    }

    #[test]
    fn a_zip_unpacks_plain_files_and_refuses_links_and_escapes() {
        use std::io::Write;
        type Writer = zip::ZipWriter<std::io::Cursor<Vec<u8>>>;
        let zip_of = |build: &dyn Fn(&mut Writer)| {
            let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            build(&mut writer);
            writer.finish().unwrap().into_inner()
        };
        let options = zip::write::SimpleFileOptions::default();
        let good = zip_of(&|w| {
            w.add_directory("pdf/", options).unwrap();
            w.start_file("pdf/SKILL.md", options).unwrap();
            w.write_all(b"---\nname: pdf\n").unwrap();
        });
        let (dir, result) = unpack_bytes(&good, Format::Zip);
        result.unwrap();
        assert!(dir.path().join("out/pdf/SKILL.md").is_file());

        let link = zip_of(&|w| {
            w.add_symlink("pdf/passwd", "/etc/passwd", options).unwrap();
        });
        let (_dir, result) = unpack_bytes(&link, Format::Zip);
        assert!(format!("{:#}", result.unwrap_err()).contains("is a link"));

        let escape = zip_of(&|w| {
            w.start_file("../../evil.sh", options).unwrap();
            w.write_all(b"rm -rf ~").unwrap();
        });
        let (dir, result) = unpack_bytes(&escape, Format::Zip);
        assert!(format!("{:#}", result.unwrap_err()).contains("points outside"));
        assert!(!dir.path().join("evil.sh").exists());
        let (_dir, result) = unpack_bytes(b"PK not really", Format::Zip);
        assert!(format!("{:#}", result.unwrap_err()).contains("not a zip archive"));
    }
}
