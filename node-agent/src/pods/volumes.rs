//! A pod's volumes on this machine, under its directory: `emptyDir` (a directory, or a tmpfs for
//! `medium: Memory`), `configMap`, `secret`, `downwardAPI` and `projected` (written by the atomic writer, refreshed
//! while the pod runs; projected service-account tokens requested through the TokenRequest API, bound to the pod and
//! renewed at 80 % of their lifetime), and `hostPath` for paths that exist. Any other type is refused with the list
//! of those supported. [`Volumes::mounts`] turns a container's `volumeMounts` into the shim's mounts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume, VolumeMount,
};

use super::atomic::{self, File};
use super::env::{self, Objects as _};
use super::objects::{ApiObjects, Token};
use crate::shim::Mount;

/// The volume types the node agent mounts.
pub const SUPPORTED: &str = "emptyDir, configMap, secret, downwardAPI, projected (serviceAccountToken, configMap, secret, downwardAPI), hostPath (existing paths)";

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum VolumeError {
    #[error("volume {volume}: {why}")]
    Volume { volume: String, why: String },
    #[error("volumeMount {mount}: {why}")]
    Mount { mount: String, why: String },
}

fn verr(volume: &str) -> impl Fn(String) -> VolumeError + '_ {
    move |why| VolumeError::Volume {
        volume: volume.to_string(),
        why,
    }
}

/// The pod's prepared volumes: each name's directory (or file) on this machine.
#[derive(Debug, Default)]
pub struct Volumes {
    pub paths: BTreeMap<String, PathBuf>,
    /// Tokens by volume and path, with their expiry, for renewal.
    tokens: BTreeMap<(String, String), i64>,
    /// tmpfs mounts made for `medium: Memory`, unmounted at teardown.
    pub tmpfs: Vec<PathBuf>,
}

/// What volumes are built from besides the pod.
pub struct Context<'a> {
    pub objects: &'a ApiObjects,
    pub dir: &'a Path,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    pub node_cpu: f64,
    pub node_memory: u64,
}

fn mode_of(item_mode: Option<i32>, default_mode: Option<i32>, fallback: u32) -> u32 {
    item_mode
        .or(default_mode)
        .map(|m| m as u32 & 0o7777)
        .unwrap_or(fallback)
}

/// The owner of volume files: the pod's fsGroup as group (and its runAsUser, for tokens), as the kubelet sets them.
fn owner(pod: &Pod) -> Option<(Option<u32>, Option<u32>)> {
    let sc = pod.spec.as_ref()?.security_context.as_ref()?;
    let uid = sc.run_as_user.map(|u| u as u32);
    let gid = sc.fs_group.map(|g| g as u32);
    (uid.is_some() || gid.is_some()).then_some((uid, gid))
}

impl Volumes {
    /// Prepares every volume of the pod.
    pub async fn prepare(pod: &Pod, ctx: &Context<'_>) -> Result<Volumes, VolumeError> {
        let mut volumes = Volumes::default();
        volumes.update(pod, ctx, true).await?;
        Ok(volumes)
    }

    /// Writes (first time) or refreshes the volumes: ConfigMap and Secret content, tokens near expiry.
    pub async fn update(
        &mut self,
        pod: &Pod,
        ctx: &Context<'_>,
        first: bool,
    ) -> Result<(), VolumeError> {
        let spec = pod.spec.as_ref();
        for volume in spec.and_then(|s| s.volumes.as_deref()).unwrap_or_default() {
            let dir = ctx.dir.join(&volume.name);
            if first {
                let path = self.create(pod, volume, &dir).await?;
                self.paths.insert(volume.name.clone(), path);
            }
            self.write(pod, volume, &dir, ctx, first).await?;
        }
        Ok(())
    }

    async fn create(
        &mut self,
        _pod: &Pod,
        volume: &Volume,
        dir: &Path,
    ) -> Result<PathBuf, VolumeError> {
        let err = verr(&volume.name);
        if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            if !path.exists() {
                return Err(err(format!(
                    "hostPath {} does not exist (the node agent creates nothing outside its own directories)",
                    host.path
                )));
            }
            return Ok(path);
        }
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        if let Some(empty) = &volume.empty_dir {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| err(e.to_string()))?;
            if empty.medium.as_deref() == Some("Memory") {
                let size = empty
                    .size_limit
                    .as_ref()
                    .and_then(|q| crate::quantity::bytes(&q.0))
                    .map(|b| format!(",size={b}"))
                    .unwrap_or_default();
                nix::mount::mount(
                    Some("tmpfs"),
                    dir,
                    Some("tmpfs"),
                    nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                    Some(format!("mode=1777{size}").as_str()),
                )
                .map_err(|e| err(format!("tmpfs: {e}")))?;
                self.tmpfs.push(dir.to_path_buf());
            }
            return Ok(dir.to_path_buf());
        }
        let known = volume.config_map.is_some()
            || volume.secret.is_some()
            || volume.downward_api.is_some()
            || volume.projected.is_some();
        if !known {
            let kind = serde_json::to_value(volume)
                .ok()
                .and_then(|v| {
                    v.as_object()
                        .and_then(|o| o.keys().find(|k| *k != "name").cloned())
                })
                .unwrap_or_else(|| "unknown".into());
            return Err(err(format!(
                "type {kind} is not supported by the node agent (supported: {SUPPORTED})"
            )));
        }
        Ok(dir.to_path_buf())
    }

    async fn write(
        &mut self,
        pod: &Pod,
        volume: &Volume,
        dir: &Path,
        ctx: &Context<'_>,
        first: bool,
    ) -> Result<(), VolumeError> {
        let err = verr(&volume.name);
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut files: BTreeMap<String, File> = BTreeMap::new();
        if let Some(cm) = &volume.config_map {
            let found = ctx
                .objects
                .config_map(namespace, &cm.name)
                .await
                .map_err(&err)?;
            match found {
                Some(found) => add_items(
                    &mut files,
                    config_map_data(&found),
                    cm.items.as_deref(),
                    cm.default_mode,
                    &volume.name,
                )?,
                None if cm.optional.unwrap_or(false) => {}
                None => return Err(err(format!("configmap \"{}\" not found", cm.name))),
            }
        } else if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            match ctx.objects.secret(namespace, &name).await.map_err(&err)? {
                Some(found) => add_items(
                    &mut files,
                    secret_data(&found),
                    secret.items.as_deref(),
                    secret.default_mode,
                    &volume.name,
                )?,
                None if secret.optional.unwrap_or(false) => {}
                None => return Err(err(format!("secret \"{name}\" not found"))),
            }
        } else if let Some(downward) = &volume.downward_api {
            for item in downward.items.as_deref().unwrap_or_default() {
                add_downward(
                    &mut files,
                    pod,
                    item,
                    downward.default_mode,
                    ctx,
                    &volume.name,
                )?;
            }
        } else if let Some(projected) = &volume.projected {
            for source in projected.sources.as_deref().unwrap_or_default() {
                if let Some(cm) = &source.config_map {
                    match ctx
                        .objects
                        .config_map(namespace, &cm.name)
                        .await
                        .map_err(&err)?
                    {
                        Some(found) => add_items(
                            &mut files,
                            config_map_data(&found),
                            cm.items.as_deref(),
                            projected.default_mode,
                            &volume.name,
                        )?,
                        None if cm.optional.unwrap_or(false) => {}
                        None => return Err(err(format!("configmap \"{}\" not found", cm.name))),
                    }
                } else if let Some(s) = &source.secret {
                    match ctx.objects.secret(namespace, &s.name).await.map_err(&err)? {
                        Some(found) => add_items(
                            &mut files,
                            secret_data(&found),
                            s.items.as_deref(),
                            projected.default_mode,
                            &volume.name,
                        )?,
                        None if s.optional.unwrap_or(false) => {}
                        None => return Err(err(format!("secret \"{}\" not found", s.name))),
                    }
                } else if let Some(d) = &source.downward_api {
                    for item in d.items.as_deref().unwrap_or_default() {
                        add_downward(
                            &mut files,
                            pod,
                            item,
                            projected.default_mode,
                            ctx,
                            &volume.name,
                        )?;
                    }
                } else if let Some(token) = &source.service_account_token {
                    let key = (volume.name.clone(), token.path.clone());
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or_default();
                    let expiration = token.expiration_seconds.unwrap_or(3600).max(600);
                    let renew_at = self.tokens.get(&key).map(|exp| exp - expiration / 5);
                    let existing = dir.join(&token.path);
                    let value =
                        if first || renew_at.is_none_or(|at| now >= at) || !existing.exists() {
                            let Token {
                                token: value,
                                expires_at,
                            } = request_token(pod, token.audience.clone(), expiration, ctx)
                                .await
                                .map_err(&err)?;
                            self.tokens.insert(key, expires_at);
                            value.into_bytes()
                        } else {
                            std::fs::read(&existing).map_err(|e| err(e.to_string()))?
                        };
                    files.insert(
                        token.path.clone(),
                        File {
                            content: value,
                            mode: mode_of(None, projected.default_mode, 0o644),
                        },
                    );
                } else {
                    return Err(err(format!(
                        "a projected source of a type the node agent does not support (supported: {SUPPORTED})"
                    )));
                }
            }
        } else {
            return Ok(());
        }
        atomic::write(dir, &files, owner(pod)).map_err(|e| err(e.to_string()))?;
        Ok(())
    }

    /// The shim's mounts for a container's `volumeMounts` (`subPath` and `subPathExpr` resolved against `env`).
    pub fn mounts(
        &self,
        container: &Container,
        env: &[(String, String)],
    ) -> Result<Vec<Mount>, VolumeError> {
        let mut mounts = Vec::new();
        for m in container.volume_mounts.as_deref().unwrap_or_default() {
            mounts.push(self.mount(m, env)?);
        }
        Ok(mounts)
    }

    fn mount(&self, m: &VolumeMount, env: &[(String, String)]) -> Result<Mount, VolumeError> {
        let merr = |why: String| VolumeError::Mount {
            mount: m.mount_path.clone(),
            why,
        };
        let base = self.paths.get(&m.name).ok_or_else(|| {
            merr(format!(
                "names volume {:?}, which the pod does not have",
                m.name
            ))
        })?;
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(p), _) if !p.is_empty() => Some(p.clone()),
            (_, Some(expr)) if !expr.is_empty() => {
                let lookup =
                    |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
                Some(env::expand(expr, &lookup))
            }
            _ => None,
        };
        let source = match sub {
            None => base.clone(),
            Some(sub) => {
                if !atomic::valid_path(&sub) {
                    return Err(merr(format!(
                        "subPath {sub:?} must be a relative path without '..'"
                    )));
                }
                let path = base.join(&sub);
                if !path.exists() {
                    // As the kubelet does for an emptyDir: a missing subPath is created as a directory.
                    std::fs::create_dir_all(&path).map_err(|e| merr(e.to_string()))?;
                }
                path
            }
        };
        if !m.mount_path.starts_with('/') {
            return Err(merr("mountPath must be absolute".into()));
        }
        Ok(Mount {
            source,
            target: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false),
        })
    }

    /// Unmounts the tmpfs volumes (the directories are removed with the pod's).
    pub fn teardown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for dir in self.tmpfs.drain(..) {
            if let Err(e) = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH) {
                problems.push(format!("unmounting {}: {e}", dir.display()));
            }
        }
        problems
    }
}

async fn request_token(
    pod: &Pod,
    audience: Option<String>,
    expiration: i64,
    ctx: &Context<'_>,
) -> Result<Token, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let audiences = audience.filter(|a| !a.is_empty()).into_iter().collect();
    ctx.objects
        .token(
            namespace,
            &sa,
            audiences,
            expiration,
            (
                pod.metadata.name.as_deref().unwrap_or_default(),
                pod.metadata.uid.as_deref().unwrap_or_default(),
            ),
        )
        .await
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.clone().unwrap_or_default() {
        data.insert(k, v.0);
    }
    data
}

fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.clone().unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    data
}

fn add_items(
    files: &mut BTreeMap<String, File>,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    volume: &str,
) -> Result<(), VolumeError> {
    match items {
        None => {
            for (key, content) in data {
                files.insert(
                    key,
                    File {
                        content,
                        mode: mode_of(None, default_mode, 0o644),
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let content = data
                    .get(&item.key)
                    .cloned()
                    .ok_or_else(|| VolumeError::Volume {
                        volume: volume.to_string(),
                        why: format!("key {:?} is not in its source", item.key),
                    })?;
                files.insert(
                    item.path.clone(),
                    File {
                        content,
                        mode: mode_of(item.mode, default_mode, 0o644),
                    },
                );
            }
        }
    }
    Ok(())
}

fn add_downward(
    files: &mut BTreeMap<String, File>,
    pod: &Pod,
    item: &DownwardAPIVolumeFile,
    default_mode: Option<i32>,
    ctx: &Context<'_>,
    volume: &str,
) -> Result<(), VolumeError> {
    let err = verr(volume);
    let value = if let Some(f) = &item.field_ref {
        match f.field_path.as_str() {
            // As files, labels and annotations are whole maps, one `key="value"` per line.
            "metadata.labels" | "metadata.annotations" => {
                let map = if f.field_path == "metadata.labels" {
                    pod.metadata.labels.clone()
                } else {
                    pod.metadata.annotations.clone()
                };
                map.unwrap_or_default()
                    .iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            path => env::field(pod, path, ctx.pod_ip, ctx.host_ip).map_err(&err)?,
        }
    } else if let Some(r) = &item.resource_field_ref {
        let name = r.container_name.clone().unwrap_or_default();
        let container = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == name))
            .ok_or_else(|| {
                err(format!(
                    "resourceFieldRef names container {name:?}, which the pod does not have"
                ))
            })?;
        let inputs = env::Inputs {
            pod,
            pod_ip: ctx.pod_ip,
            host_ip: ctx.host_ip,
            services: &[],
            node_cpu: ctx.node_cpu,
            node_memory: ctx.node_memory,
        };
        env::resource(
            container,
            &r.resource,
            r.divisor.as_ref().map(|d| d.0.as_str()),
            &inputs,
        )
        .map_err(&err)?
    } else {
        return Err(err(format!(
            "item {:?} has neither fieldRef nor resourceFieldRef",
            item.path
        )));
    };
    files.insert(
        item.path.clone(),
        File {
            content: value.into_bytes(),
            mode: mode_of(item.mode, default_mode, 0o644),
        },
    );
    Ok(())
}
