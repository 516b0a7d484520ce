//! Unpacking fetched archives (tar.gz, tar.zst, zip) into a release
//! directory, refusing anything that would write outside it: entries with
//! `..` components or absolute paths, symlinks and hardlinks that point out
//! of the release, and device or fifo entries. The caller removes the
//! release directory when unpacking fails, so nothing half-unpacked is
//! ever switched to.

use cerebro_types::deploy::Unpack;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Why an archive was not unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry that would write (or point) outside the release.
    #[error("refused archive entry '{entry}': {why}")]
    Refused { entry: String, why: String },
    /// The archive cannot be read, or a file cannot be written.
    #[error("cannot unpack{}: {source}", entry.as_ref().map(|e| format!(" entry '{e}'")).unwrap_or_default())]
    Io {
        entry: Option<String>,
        source: std::io::Error,
    },
    /// `unpack = "none"` or an unresolved `auto` reached the unpacker.
    #[error("'{0:?}' is not an archive format")]
    NotAnArchive(Unpack),
}

fn io(entry: Option<&str>) -> impl FnOnce(std::io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        entry: entry.map(str::to_string),
        source,
    }
}

fn refused(entry: &str, why: impl Into<String>) -> UnpackError {
    UnpackError::Refused {
        entry: entry.to_string(),
        why: why.into(),
    }
}

/// Unpacks `archive` (in `format`) into `dest`, which must lie inside
/// `root` (the release directory). Returns the number of entries.
///
/// # Errors
/// [`UnpackError::Refused`] naming the first entry that would leave
/// `root`; [`UnpackError::Io`] when reading or writing fails.
pub fn unpack(
    archive: &Path,
    format: Unpack,
    dest: &Path,
    root: &Path,
) -> Result<u64, UnpackError> {
    std::fs::create_dir_all(dest).map_err(io(None))?;
    let root = root.canonicalize().map_err(io(None))?;
    let dest = dest.canonicalize().map_err(io(None))?;
    if !dest.starts_with(&root) {
        return Err(refused(
            &dest.display().to_string(),
            "the destination is outside the release",
        ));
    }
    let file = std::fs::File::open(archive).map_err(io(None))?;
    let count = match format {
        Unpack::TarGz => unpack_tar(flate2::read::GzDecoder::new(file), &dest, &root)?,
        Unpack::TarZst => unpack_tar(
            zstd::stream::read::Decoder::new(file).map_err(io(None))?,
            &dest,
            &root,
        )?,
        Unpack::Zip => unpack_zip(file, &dest, &root)?,
        other => return Err(UnpackError::NotAnArchive(other)),
    };
    check_links(&root, &root)?;
    Ok(count)
}

/// An entry's path as a relative path without `.`, `..` or roots.
fn relative_entry(name: &str, path: &Path) -> Result<PathBuf, UnpackError> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(refused(name, "its path has a '..' component")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused(name, "its path is absolute"))
            }
        }
    }
    Ok(out)
}

/// Resolves `link` (a symlink's target text) as the kernel would from the
/// directory `from`, following symlinks that already exist, and checks that
/// every step stays inside `root`.
fn resolve_inside(root: &Path, from: &Path, link: &Path, name: &str) -> Result<(), UnpackError> {
    if link.is_absolute() {
        return Err(refused(
            name,
            format!("it links to the absolute path {}", link.display()),
        ));
    }
    let mut at = from.to_path_buf();
    for component in link.components() {
        match component {
            Component::Normal(part) => {
                at.push(part);
                if at.is_symlink() {
                    at = at.canonicalize().map_err(|_| {
                        refused(
                            name,
                            format!("it links through {}, which dangles", at.display()),
                        )
                    })?;
                }
            }
            Component::CurDir => {}
            Component::ParentDir => {
                at.pop();
            }
            Component::RootDir | Component::Prefix(_) => unreachable!("checked as absolute"),
        }
        if !at.starts_with(root) {
            return Err(refused(
                name,
                format!("it links to {}, outside the release", link.display()),
            ));
        }
    }
    Ok(())
}

/// Creates the parent directories of `target` and checks that, symlinks
/// resolved, they are inside `root`; returns the real parent.
fn safe_parent(root: &Path, target: &Path, name: &str) -> Result<PathBuf, UnpackError> {
    let parent = target.parent().unwrap_or(root);
    std::fs::create_dir_all(parent).map_err(io(Some(name)))?;
    let real = parent.canonicalize().map_err(io(Some(name)))?;
    if !real.starts_with(root) {
        return Err(refused(
            name,
            format!("it would be written through a link to {}", real.display()),
        ));
    }
    Ok(real)
}

fn unpack_tar(reader: impl Read, dest: &Path, root: &Path) -> Result<u64, UnpackError> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut count = 0;
    for entry in archive.entries().map_err(io(None))? {
        let mut entry = entry.map_err(io(None))?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let path = entry.path().map_err(io(Some(&name)))?.into_owned();
        let relative = relative_entry(&name, &path)?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = dest.join(&relative);
        let kind = entry.header().entry_type();
        let parent = safe_parent(root, &target, &name)?;
        if kind.is_symlink() || kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(io(Some(&name)))?
                .ok_or_else(|| refused(&name, "a link without a target"))?
                .into_owned();
            if kind.is_symlink() {
                resolve_inside(root, &parent, &link, &name)?;
            } else {
                // A hardlink's target is a path in the archive, from `dest`.
                let inside = relative_entry(&name, &link).map_err(|_| {
                    refused(
                        &name,
                        format!("it hard-links to {}, outside the release", link.display()),
                    )
                })?;
                resolve_inside(root, dest, &inside, &name)?;
            }
        } else if !(kind.is_file() || kind.is_dir() || kind.is_contiguous()) {
            if kind.is_pax_global_extensions()
                || kind.is_pax_local_extensions()
                || kind.is_gnu_longname()
                || kind.is_gnu_longlink()
            {
                continue;
            }
            return Err(refused(
                &name,
                format!("entries of type {kind:?} are not unpacked"),
            ));
        }
        // `unpack_in` checks again that the real parent is inside `dest`.
        let inside = entry.unpack_in(dest).map_err(io(Some(&name)))?;
        if !inside {
            return Err(refused(&name, "it would be written outside the release"));
        }
        count += 1;
    }
    Ok(count)
}

fn unpack_zip(file: std::fs::File, dest: &Path, root: &Path) -> Result<u64, UnpackError> {
    let mut archive = zip::ZipArchive::new(file).map_err(|e| UnpackError::Io {
        entry: None,
        source: std::io::Error::other(e),
    })?;
    let mut count = 0;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| UnpackError::Io {
            entry: None,
            source: std::io::Error::other(e),
        })?;
        let name = entry.name().to_string();
        let relative = relative_entry(&name, Path::new(&name))?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = dest.join(&relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(io(Some(&name)))?;
            safe_parent(root, &target.join("x"), &name)?;
            continue;
        }
        let parent = safe_parent(root, &target, &name)?;
        let target = parent.join(target.file_name().unwrap_or_default());
        if target.is_symlink() || target.is_file() {
            std::fs::remove_file(&target).map_err(io(Some(&name)))?;
        }
        if entry.is_symlink() {
            let mut link = String::new();
            entry.read_to_string(&mut link).map_err(io(Some(&name)))?;
            resolve_inside(root, &parent, Path::new(&link), &name)?;
            std::os::unix::fs::symlink(&link, &target).map_err(io(Some(&name)))?;
        } else {
            let mode = entry.unix_mode().unwrap_or(0o644) & 0o7777;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(mode)
                .open(&target)
                .map_err(io(Some(&name)))?;
            std::io::copy(&mut entry, &mut out).map_err(io(Some(&name)))?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .map_err(io(Some(&name)))?;
        }
        count += 1;
    }
    Ok(count)
}

/// After unpacking: every symlink under `dir` resolves inside `root` (a
/// chain of links, each harmless on its own, can still point out), or
/// dangles without leaving it.
fn check_links(root: &Path, dir: &Path) -> Result<(), UnpackError> {
    for item in std::fs::read_dir(dir).map_err(io(None))? {
        let item = item.map_err(io(None))?;
        let path = item.path();
        let kind = item.file_type().map_err(io(None))?;
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        if kind.is_symlink() {
            let link = std::fs::read_link(&path).map_err(io(Some(&name)))?;
            match path.canonicalize() {
                Ok(real) if real.starts_with(root) => {}
                Ok(real) => {
                    return Err(refused(
                        &name,
                        format!("it resolves to {}, outside the release", real.display()),
                    ))
                }
                Err(_) => resolve_inside(root, dir, &link, &name)?,
            }
        } else if kind.is_dir() {
            check_links(root, &path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar.gz built entry by entry with raw headers, so it may hold what
    /// the `tar` crate's builder would refuse to write.
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Self {
            Tar(tar::Builder::new(Vec::new()))
        }

        fn raw_name(header: &mut tar::Header, name: &str) {
            let bytes = name.as_bytes();
            let old = header.as_old_mut();
            old.name = [0; 100];
            old.name[..bytes.len()].copy_from_slice(bytes);
        }

        fn file(mut self, name: &str, body: &[u8]) -> Self {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            Self::raw_name(&mut header, name);
            header.set_cksum();
            self.0.append(&header, body).unwrap();
            self
        }

        fn link(mut self, kind: tar::EntryType, name: &str, target: &str) -> Self {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(0);
            header.set_mode(0o777);
            Self::raw_name(&mut header, name);
            let bytes = target.as_bytes();
            let old = header.as_old_mut();
            old.linkname = [0; 100];
            old.linkname[..bytes.len()].copy_from_slice(bytes);
            header.set_cksum();
            self.0.append(&header, &[][..]).unwrap();
            self
        }

        fn gz(self) -> Vec<u8> {
            let tar = self.0.into_inner().unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &tar).unwrap();
            gz.finish().unwrap()
        }
    }

    /// Unpacks `archive` into a fresh release inside a sandbox whose other
    /// directory, `outside`, must stay empty.
    fn try_unpack(archive: &[u8], format: Unpack) -> (Result<u64, UnpackError>, tempfile::TempDir) {
        let sandbox = tempfile::tempdir().unwrap();
        let release = sandbox.path().join("deploy/releases/r1");
        std::fs::create_dir_all(&release).unwrap();
        std::fs::create_dir_all(sandbox.path().join("outside")).unwrap();
        let file = sandbox.path().join("artifact");
        std::fs::write(&file, archive).unwrap();
        let result = unpack(&file, format, &release, &release);
        (result, sandbox)
    }

    fn assert_refused(result: Result<u64, UnpackError>, entry: &str, sandbox: &Path) {
        match result {
            Err(UnpackError::Refused { entry: named, why }) => {
                assert_eq!(named, entry, "{why}")
            }
            other => panic!("expected '{entry}' refused, got {other:?}"),
        }
        let outside: Vec<_> = std::fs::read_dir(sandbox.join("outside"))
            .unwrap()
            .collect();
        assert!(outside.is_empty(), "nothing written outside: {outside:?}");
        assert!(!sandbox.join("deploy/releases/x").exists());
        assert!(!sandbox.join("deploy/x").exists());
    }

    #[test]
    fn a_plain_tarball_unpacks() {
        let archive = Tar::new()
            .file("app/VERSION", b"v1\n")
            .link(tar::EntryType::Symlink, "app/latest", "VERSION")
            .link(tar::EntryType::Link, "app/again", "app/VERSION")
            .gz();
        let (result, sandbox) = try_unpack(&archive, Unpack::TarGz);
        assert_eq!(result.unwrap(), 3);
        let release = sandbox.path().join("deploy/releases/r1");
        assert_eq!(
            std::fs::read_to_string(release.join("app/latest")).unwrap(),
            "v1\n"
        );
        assert_eq!(
            std::fs::read_to_string(release.join("app/again")).unwrap(),
            "v1\n"
        );
    }

    #[test]
    fn tar_slip_with_dot_dot_is_refused() {
        let archive = Tar::new().file("ok", b"1").file("../x", b"evil").gz();
        let (result, sandbox) = try_unpack(&archive, Unpack::TarGz);
        assert_refused(result, "../x", sandbox.path());
        let archive = Tar::new().file("a/../../../outside/x", b"evil").gz();
        let (result, sandbox) = try_unpack(&archive, Unpack::TarGz);
        assert_refused(result, "a/../../../outside/x", sandbox.path());
    }

    #[test]
    fn tar_slip_with_an_absolute_path_is_refused() {
        let sandbox = tempfile::tempdir().unwrap();
        let target = format!("{}/outside/abs", sandbox.path().display());
        let archive = Tar::new().file(&target, b"evil").gz();
        let (result, other) = try_unpack(&archive, Unpack::TarGz);
        assert_refused(result, &target, other.path());
        assert!(!Path::new(&target).exists());
    }

    #[test]
    fn a_symlink_out_then_a_file_through_it_is_refused() {
        let archive = Tar::new()
            .link(tar::EntryType::Symlink, "etc", "/etc")
            .file("etc/cerebro-tar-slip", b"evil")
            .gz();
        let (result, sandbox) = try_unpack(&archive, Unpack::TarGz);
        assert_refused(result, "etc", sandbox.path());
        assert!(!Path::new("/etc/cerebro-tar-slip").exists());
        let archive = Tar::new()
            .link(tar::EntryType::Symlink, "up", "../../../outside")
            .file("up/x", b"evil")
            .gz();
        let (result, sandbox) = try_unpack(&archive, Unpack::TarGz);
        assert_refused(result, "up", sandbox.path());
        // Two links each inside on their own, out together.
        let archive = Tar::new()
            .link(tar::EntryType::Symlink, "a", "b/..")
            .link(tar::EntryType::Symlink, "b", ".")
            .gz();
        let (result, sandbox) = try_unpack(&archive, Unpack::TarGz);
        assert_refused(result, "a", sandbox.path());
    }

    #[test]
    fn a_hardlink_out_is_refused() {
        let archive = Tar::new()
            .link(tar::EntryType::Link, "passwd", "/etc/passwd")
            .gz();
        let (result, sandbox) = try_unpack(&archive, Unpack::TarGz);
        assert_refused(result, "passwd", sandbox.path());
        let archive = Tar::new()
            .link(tar::EntryType::Link, "x", "../../../outside/y")
            .gz();
        let (result, sandbox) = try_unpack(&archive, Unpack::TarGz);
        assert_refused(result, "x", sandbox.path());
    }

    #[test]
    fn a_tar_zst_unpacks_and_its_slip_is_refused() {
        let tar = |t: Tar| {
            let tar = t.0.into_inner().unwrap();
            zstd::encode_all(&tar[..], 1).unwrap()
        };
        let (result, sandbox) =
            try_unpack(&tar(Tar::new().file("a/b.txt", b"zst")), Unpack::TarZst);
        assert_eq!(result.unwrap(), 1);
        let release = sandbox.path().join("deploy/releases/r1");
        assert_eq!(
            std::fs::read_to_string(release.join("a/b.txt")).unwrap(),
            "zst"
        );
        let (result, sandbox) =
            try_unpack(&tar(Tar::new().file("../../x", b"evil")), Unpack::TarZst);
        assert_refused(result, "../../x", sandbox.path());
    }

    fn zip(entries: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        for (name, link, body) in entries {
            match link {
                Some(target) => writer.add_symlink(*name, *target, options).unwrap(),
                None => {
                    writer.start_file(*name, options).unwrap();
                    std::io::Write::write_all(&mut writer, body).unwrap();
                }
            }
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn zip_unpacks_and_zip_slip_is_refused() {
        let (result, sandbox) = try_unpack(&zip(&[("d/f.txt", None, b"hi")]), Unpack::Zip);
        assert_eq!(result.unwrap(), 1);
        let release = sandbox.path().join("deploy/releases/r1");
        assert_eq!(
            std::fs::read_to_string(release.join("d/f.txt")).unwrap(),
            "hi"
        );
        let (result, sandbox) = try_unpack(&zip(&[("../x", None, b"evil")]), Unpack::Zip);
        assert_refused(result, "../x", sandbox.path());
        let (result, sandbox) =
            try_unpack(&zip(&[("/tmp/cerebro-zip-slip", None, b"e")]), Unpack::Zip);
        assert_refused(result, "/tmp/cerebro-zip-slip", sandbox.path());
        let (result, sandbox) = try_unpack(
            &zip(&[("l", Some("/etc"), b""), ("l/cerebro-zip-slip", None, b"e")]),
            Unpack::Zip,
        );
        assert_refused(result, "l", sandbox.path());
    }
}
