//! The image mapping (`cluster/images.yaml`): which local program a container's image runs. No image is pulled: an
//! image maps to a directory of programs (or to this machine's PATH, `host`), and the container's command, or the
//! image's entrypoint when it has none, is found there by its file name. Docker's rules for `command`/`args` against
//! an image's ENTRYPOINT/CMD apply. The file is read again for every container start, so a mapping added while a pod
//! waits takes effect at its next try.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    images: Vec<Mapping>,
}

/// One entry of the mapping file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// A glob (`*` any run of characters) on the image reference as written in the pod.
    pub image: String,
    /// A directory (with `${NAME}` references), or `host`.
    pub programs: String,
    /// The image's ENTRYPOINT.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// The image's CMD.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// The image's WORKDIR.
    #[serde(default, rename = "workingDir")]
    pub working_dir: Option<String>,
    /// The image's USER, `UID[:GID]` (root when absent).
    #[serde(default)]
    pub user: Option<String>,
    /// The image's ENV (PATH defaults to Docker's).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Why a container's image cannot run here.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ImageError {
    /// No entry matches: the pod waits with `ErrImageNeverPull`.
    #[error(
        "image {image:?} is not mapped to a local program in {file} (the local cluster pulls no image; add an entry there)"
    )]
    NotMapped { image: String, file: String },
    /// The entry matches but the program is not there: `CreateContainerError`.
    #[error("image {image:?} runs programs from {dir}, which has no {program:?}{hint}")]
    NoProgram {
        image: String,
        dir: String,
        program: String,
        hint: String,
    },
    #[error("the container has no command and image {image:?} has no entrypoint in {file}")]
    NoCommand { image: String, file: String },
    #[error("the image mapping {file} is unreadable: {why}")]
    BadFile { file: String, why: String },
}

impl ImageError {
    /// The container's waiting reason, as the kubelet names it.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::NotMapped { .. } => "ErrImageNeverPull",
            ImageError::NoProgram { .. } | ImageError::NoCommand { .. } => "CreateContainerError",
            ImageError::BadFile { .. } => "CreateContainerConfigError",
        }
    }
}

/// What a container runs, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The program on this machine.
    pub program: PathBuf,
    /// The command's first word as written (argv[0]).
    pub argv0: String,
    pub args: Vec<String>,
    pub working_dir: Option<String>,
    /// The image's user and group.
    pub uid: u32,
    pub gid: u32,
    /// The image's environment, PATH included.
    pub env: Vec<(String, String)>,
}

/// Docker's PATH for images that set none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The mapping file and the directories its `${NAME}`s stand for.
#[derive(Debug, Clone)]
pub struct Images {
    file: PathBuf,
    dirs: BTreeMap<String, PathBuf>,
}

impl Images {
    pub fn new(file: PathBuf, dirs: impl IntoIterator<Item = (String, PathBuf)>) -> Images {
        Images {
            file,
            dirs: dirs.into_iter().collect(),
        }
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    fn load(&self) -> Result<Vec<Mapping>, ImageError> {
        let text = std::fs::read_to_string(&self.file).map_err(|e| self.bad(e.to_string()))?;
        let parsed: MappingFile =
            serde_norway::from_str(&text).map_err(|e| self.bad(e.to_string()))?;
        Ok(parsed.images)
    }

    fn bad(&self, why: String) -> ImageError {
        ImageError::BadFile {
            file: self.file.display().to_string(),
            why,
        }
    }

    /// Resolves a container: its image, `command` and `args` as the pod spec has them.
    pub fn resolve(
        &self,
        image: &str,
        command: &[String],
        args: &[String],
    ) -> Result<Resolved, ImageError> {
        let mappings = self.load()?;
        let file = self.file.display().to_string();
        let mapping = mappings
            .iter()
            .find(|m| glob(&m.image, image))
            .ok_or_else(|| ImageError::NotMapped {
                image: image.to_string(),
                file: file.clone(),
            })?;
        // Docker's rules: `command` replaces ENTRYPOINT (and drops CMD); `args` replaces CMD.
        let mut words: Vec<String> = if command.is_empty() {
            let mut w = mapping.entrypoint.clone();
            w.extend(if args.is_empty() {
                mapping.cmd.clone()
            } else {
                args.to_vec()
            });
            w
        } else {
            let mut w = command.to_vec();
            w.extend(args.iter().cloned());
            w
        };
        if words.is_empty() {
            return Err(ImageError::NoCommand {
                image: image.to_string(),
                file,
            });
        }
        let argv0 = words.remove(0);
        let program = self.program(mapping, image, &argv0)?;
        let (uid, gid) = match mapping.user.as_deref() {
            None => (0, 0),
            Some(user) => {
                let (u, g) = user.split_once(':').unwrap_or((user, user));
                match (u.parse(), g.parse()) {
                    (Ok(u), Ok(g)) => (u, g),
                    _ => {
                        return Err(self.bad(format!(
                            "user {user:?} of {} is not UID[:GID]",
                            mapping.image
                        )));
                    }
                }
            }
        };
        let mut env: Vec<(String, String)> = mapping.env.clone().into_iter().collect();
        if !mapping.env.contains_key("PATH") {
            env.insert(0, ("PATH".to_string(), DEFAULT_PATH.to_string()));
        }
        Ok(Resolved {
            program,
            argv0,
            args: words,
            working_dir: mapping.working_dir.clone(),
            uid,
            gid,
            env,
        })
    }

    fn program(&self, mapping: &Mapping, image: &str, argv0: &str) -> Result<PathBuf, ImageError> {
        let name = Path::new(argv0)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| argv0.to_string());
        if mapping.programs == "host" {
            if argv0.starts_with('/') && Path::new(argv0).is_file() {
                return Ok(PathBuf::from(argv0));
            }
            let path = std::env::var_os("PATH").unwrap_or_default();
            return std::env::split_paths(&path)
                .map(|d| d.join(&name))
                .find(|p| p.is_file())
                .ok_or_else(|| ImageError::NoProgram {
                    image: image.to_string(),
                    dir: "this machine's PATH".into(),
                    program: name.clone(),
                    hint: String::new(),
                });
        }
        let dir = self.expand(&mapping.programs);
        let program = dir.join(&name);
        if program.is_file() {
            Ok(program)
        } else {
            Err(ImageError::NoProgram {
                image: image.to_string(),
                dir: dir.display().to_string(),
                program: name,
                hint: " (build it: make cluster builds the lab's programs)".into(),
            })
        }
    }

    fn expand(&self, template: &str) -> PathBuf {
        let mut out = template.to_string();
        for (name, dir) in &self.dirs {
            out = out.replace(&format!("${{{name}}}"), &dir.display().to_string());
        }
        PathBuf::from(out)
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(dir: &Path) -> Images {
        let file = dir.join("images.yaml");
        std::fs::write(
            &file,
            "images:\n  - image: \"autoscaling-lab:*\"\n    programs: \"${BIN}\"\n    entrypoint: [\"/usr/local/bin/consumer\"]\n\
             \x20 - image: \"busybox*\"\n    programs: host\n    entrypoint: [sh]\n",
        )
        .unwrap();
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for p in ["consumer", "generator"] {
            std::fs::write(bin.join(p), "").unwrap();
        }
        Images::new(file, [("BIN".to_string(), bin)])
    }

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn commands_resolve_by_file_name_in_the_mapped_directory() {
        let dir = tempfile::tempdir().unwrap();
        let images = images(dir.path());
        let r = images
            .resolve(
                "autoscaling-lab:dev",
                &words(&["/usr/local/bin/generator"]),
                &words(&["run", "--url", "x"]),
            )
            .unwrap();
        assert_eq!(r.program, dir.path().join("bin/generator"));
        assert_eq!(r.argv0, "/usr/local/bin/generator");
        assert_eq!(r.args, words(&["run", "--url", "x"]));
        let r = images
            .resolve("autoscaling-lab:dev", &[], &words(&["--host", "0.0.0.0"]))
            .unwrap();
        assert_eq!(
            r.program,
            dir.path().join("bin/consumer"),
            "args alone keep the entrypoint"
        );
        let r = images
            .resolve("busybox:1.36", &[], &words(&["-c", "exit 3"]))
            .unwrap();
        assert!(r.program.ends_with("sh"));
    }

    #[test]
    fn unmapped_images_and_missing_programs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let images = images(dir.path());
        let e = images.resolve("nginx:1.27", &[], &[]).unwrap_err();
        assert_eq!(e.reason(), "ErrImageNeverPull");
        assert!(e.to_string().contains("images.yaml"), "{e}");
        let e = images
            .resolve("autoscaling-lab:dev", &words(&["/usr/local/bin/lab"]), &[])
            .unwrap_err();
        assert_eq!(e.reason(), "CreateContainerError");
        assert!(e.to_string().contains("\"lab\""), "{e}");
    }

    #[test]
    fn globs() {
        assert!(glob("autoscaling-lab:*", "autoscaling-lab:dev"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("autoscaling-lab:*", "registry/autoscaling-lab:dev"));
        assert!(glob("exact", "exact") && !glob("exact", "exact2"));
    }
}
