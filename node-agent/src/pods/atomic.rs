//! The kubelet's atomic writer for configMap, secret, downwardAPI and projected volumes: the files live in a
//! timestamped directory, `..data` links to the current one, and each visible name links through `..data`. An
//! update writes a new directory and swaps `..data` with one rename, so a reader never sees half of an update, and
//! a file a container has open keeps its content.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path};

const DATA: &str = "..data";

/// One file of the volume: its path relative to the volume, content, mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub content: Vec<u8>,
    pub mode: u32,
}

/// Checks a volume item path as the API server's validation does: relative, no `..`, not starting with `..`.
pub fn valid_path(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty()
        && !path.starts_with("..")
        && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Writes `files` into `dir` atomically; `owner` (uid, gid) for every file and directory when given. Returns
/// whether anything changed.
pub fn write(
    dir: &Path,
    files: &BTreeMap<String, File>,
    owner: Option<(Option<u32>, Option<u32>)>,
) -> io::Result<bool> {
    fs::create_dir_all(dir)?;
    if current(dir).as_ref() == Some(files) {
        return Ok(false);
    }
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let version = dir.join(&stamp);
    fs::create_dir(&version)?;
    for (path, file) in files {
        if !valid_path(path) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid path {path:?}"),
            ));
        }
        let target = version.join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&target, &file.content)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(file.mode))?;
    }
    if let Some((uid, gid)) = owner {
        chown_tree(&version, uid, gid)?;
    }
    let old = fs::read_link(dir.join(DATA)).ok();
    let tmp = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp)?;
    fs::rename(&tmp, dir.join(DATA))?;
    let visible: BTreeSet<String> = files
        .keys()
        .filter_map(|p| p.split('/').next().map(String::from))
        .collect();
    for name in &visible {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA).join(name), &link)?;
        }
    }
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !visible.contains(&name) {
            fs::remove_file(entry.path())?;
        }
    }
    if let Some(old) = old
        && old != Path::new(&stamp)
    {
        fs::remove_dir_all(dir.join(old))?;
    }
    Ok(true)
}

fn chown_tree(dir: &Path, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    std::os::unix::fs::chown(dir, uid, gid)?;
    for entry in fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            chown_tree(&path, uid, gid)?;
        } else {
            std::os::unix::fs::chown(&path, uid, gid)?;
        }
    }
    Ok(())
}

/// What the volume holds now (to skip rewriting the same content).
fn current(dir: &Path) -> Option<BTreeMap<String, File>> {
    let version = dir.join(fs::read_link(dir.join(DATA)).ok()?);
    let mut files = BTreeMap::new();
    collect(&version, &version, &mut files).ok()?;
    Some(files)
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, File>) -> io::Result<()> {
    for entry in fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(root, &path, files)?;
        } else {
            let rel = path
                .strip_prefix(root)
                .map_err(io::Error::other)?
                .to_string_lossy()
                .into_owned();
            let mode = entry.metadata()?.permissions().mode() & 0o7777;
            files.insert(
                rel,
                File {
                    content: fs::read(&path)?,
                    mode,
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, File> {
        pairs
            .iter()
            .map(|(p, c)| {
                (
                    p.to_string(),
                    File {
                        content: c.as_bytes().to_vec(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn updates_swap_the_data_link_and_drop_old_names() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        assert!(write(&vol, &files(&[("a", "1"), ("sub/b", "2")]), None).unwrap());
        assert_eq!(fs::read_to_string(vol.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(vol.join("sub/b")).unwrap(), "2");
        assert!(
            !write(&vol, &files(&[("a", "1"), ("sub/b", "2")]), None).unwrap(),
            "same content: no write"
        );
        assert!(write(&vol, &files(&[("a", "3")]), None).unwrap());
        assert_eq!(fs::read_to_string(vol.join("a")).unwrap(), "3");
        assert!(
            !vol.join("sub").exists(),
            "a name no longer in the volume is removed"
        );
        let versions = fs::read_dir(&vol)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("..1"))
            .count();
        assert_eq!(versions, 1, "the old version is removed");
    }

    #[test]
    fn paths_are_checked() {
        assert!(valid_path("a/b"));
        for bad in ["", "/etc/passwd", "../x", "a/../b", "..data"] {
            assert!(!valid_path(bad), "{bad}");
        }
    }
}
