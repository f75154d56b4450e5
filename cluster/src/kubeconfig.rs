//! Kubeconfigs: one per component (client certificate embedded), the admin's, and the admin's merged into the
//! user's kubeconfig as context `autoscaling-lab-NAME` (made current unless `--no-switch`), as kind does. The merge
//! keeps every other entry and field of the user's file as it was.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_norway::{Mapping, Value};

use crate::pki::Pair;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a kubeconfig: {why}")]
    Invalid { path: PathBuf, why: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KubeconfigError + '_ {
    move |source| KubeconfigError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn base64_file(path: &Path) -> Result<String, KubeconfigError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).expect("a literal YAML document")
}

/// A kubeconfig with one cluster, one user and one context, all named `name`.
pub fn single(
    name: &str,
    server: &str,
    ca: &Path,
    client: &Pair,
) -> Result<Value, KubeconfigError> {
    let mut doc = yaml("apiVersion: v1\nkind: Config\npreferences: {}\n");
    let entry = |kind: &str, body: Value| {
        let mut m = Mapping::new();
        m.insert("name".into(), name.into());
        m.insert(kind.into(), body);
        Value::Mapping(m)
    };
    let mut cluster = Mapping::new();
    cluster.insert("server".into(), server.into());
    cluster.insert("certificate-authority-data".into(), base64_file(ca)?.into());
    let mut user = Mapping::new();
    user.insert(
        "client-certificate-data".into(),
        base64_file(&client.cert)?.into(),
    );
    user.insert("client-key-data".into(), base64_file(&client.key)?.into());
    let mut context = Mapping::new();
    context.insert("cluster".into(), name.into());
    context.insert("user".into(), name.into());
    let map = doc.as_mapping_mut().expect("a mapping");
    map.insert(
        "clusters".into(),
        Value::Sequence(vec![entry("cluster", Value::Mapping(cluster))]),
    );
    map.insert(
        "users".into(),
        Value::Sequence(vec![entry("user", Value::Mapping(user))]),
    );
    map.insert(
        "contexts".into(),
        Value::Sequence(vec![entry("context", Value::Mapping(context))]),
    );
    map.insert("current-context".into(), name.into());
    Ok(doc)
}

/// Writes a kubeconfig (mode 0600: it holds a private key).
pub fn write(path: &Path, doc: &Value) -> Result<(), KubeconfigError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let text = serde_norway::to_string(doc).map_err(|e| KubeconfigError::Invalid {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    fs::write(path, text).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err(path))
}

/// The file kubectl writes to: the first of `$KUBECONFIG` that exists (else its first entry), or ~/.kube/config.
pub fn user_kubeconfig() -> Option<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let paths: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if let Some(existing) = paths.iter().find(|p| p.exists()) {
            return Some(existing.clone());
        }
        if let Some(first) = paths.into_iter().next() {
            return Some(first);
        }
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config"))
}

fn read_or_empty(path: &Path) -> Result<Value, KubeconfigError> {
    match fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => {
            let doc: Value =
                serde_norway::from_str(&text).map_err(|e| KubeconfigError::Invalid {
                    path: path.to_path_buf(),
                    why: e.to_string(),
                })?;
            if !doc.is_mapping() {
                return Err(KubeconfigError::Invalid {
                    path: path.to_path_buf(),
                    why: "the document is not a mapping".into(),
                });
            }
            Ok(doc)
        }
        Ok(_) => Ok(yaml("apiVersion: v1\nkind: Config\npreferences: {}\n")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Ok(yaml("apiVersion: v1\nkind: Config\npreferences: {}\n"))
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Replaces (or adds) the entry called `name` in the list `key` of `doc`.
fn upsert(doc: &mut Value, key: &str, name: &str, entry: Option<Value>) {
    let map = doc.as_mapping_mut().expect("checked to be a mapping");
    let list = map
        .entry(key.into())
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if !list.is_sequence() {
        *list = Value::Sequence(Vec::new());
    }
    let items = list.as_sequence_mut().expect("a sequence");
    items.retain(|item| item.get("name").and_then(Value::as_str) != Some(name));
    if let Some(entry) = entry {
        items.push(entry);
    }
}

/// Merges the single-context `admin` into the kubeconfig at `path`, making it current when `switch`.
pub fn merge(path: &Path, admin: &Value, switch: bool) -> Result<(), KubeconfigError> {
    let mut doc = read_or_empty(path)?;
    let name = admin
        .get("current-context")
        .and_then(Value::as_str)
        .expect("built by single()")
        .to_string();
    for key in ["clusters", "users", "contexts"] {
        let entry = admin
            .get(key)
            .and_then(|l| l.as_sequence())
            .and_then(|l| l.first())
            .cloned();
        upsert(&mut doc, key, &name, entry);
    }
    if switch {
        doc.as_mapping_mut()
            .expect("checked to be a mapping")
            .insert("current-context".into(), name.as_str().into());
    }
    write(path, &doc)
}

/// Removes the cluster's entries from the kubeconfig at `path`; a current context pointing at it is unset, as
/// `kind delete cluster` does. Nothing happens to a file that does not hold them.
pub fn unmerge(path: &Path, name: &str) -> Result<bool, KubeconfigError> {
    if !path.exists() {
        return Ok(false);
    }
    let mut doc = read_or_empty(path)?;
    let had = ["clusters", "users", "contexts"].iter().any(|key| {
        doc.get(*key)
            .and_then(Value::as_sequence)
            .is_some_and(|items| {
                items
                    .iter()
                    .any(|i| i.get("name").and_then(Value::as_str) == Some(name))
            })
    });
    if !had {
        return Ok(false);
    }
    for key in ["clusters", "users", "contexts"] {
        upsert(&mut doc, key, name, None);
    }
    if doc.get("current-context").and_then(Value::as_str) == Some(name) {
        doc.as_mapping_mut()
            .expect("checked to be a mapping")
            .insert("current-context".into(), "".into());
    }
    write(path, &doc)?;
    Ok(true)
}

/// The current context of the kubeconfig at `path`, if it names one.
pub fn current_context(path: &Path) -> Option<String> {
    let doc = read_or_empty(path).ok()?;
    doc.get("current-context")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(dir: &Path) -> Value {
        let pem = dir.join("x.pem");
        fs::write(&pem, "PEM").unwrap();
        let pair = Pair {
            cert: pem.clone(),
            key: pem.clone(),
        };
        single(
            "autoscaling-lab-local",
            "https://10.243.255.1:6443",
            &pem,
            &pair,
        )
        .unwrap()
    }

    #[test]
    fn merge_keeps_the_users_entries_and_unmerge_removes_only_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster: {server: 'https://prod:6443'}\n\
             users:\n- name: prod\n  user: {token: abc}\ncontexts:\n- name: prod\n  context: {cluster: prod, user: prod, namespace: web}\n\
             current-context: prod\nextensions: [{name: keep-me}]\n",
        )
        .unwrap();
        merge(&path, &admin(dir.path()), false).unwrap();
        assert_eq!(
            current_context(&path).as_deref(),
            Some("prod"),
            "--no-switch keeps the current context"
        );
        merge(&path, &admin(dir.path()), true).unwrap();
        merge(&path, &admin(dir.path()), true).unwrap();
        let doc: Value = serde_norway::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            doc["contexts"].as_sequence().unwrap().len(),
            2,
            "merging twice adds one entry"
        );
        assert_eq!(doc["contexts"][0]["context"]["namespace"], "web");
        assert_eq!(doc["extensions"][0]["name"], "keep-me");
        assert_eq!(
            current_context(&path).as_deref(),
            Some("autoscaling-lab-local")
        );
        assert!(unmerge(&path, "autoscaling-lab-local").unwrap());
        let doc: Value = serde_norway::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["clusters"].as_sequence().unwrap().len(), 1);
        assert_eq!(doc["current-context"], "");
        assert!(!unmerge(&path, "autoscaling-lab-local").unwrap());
    }

    #[test]
    fn a_missing_file_is_created_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config");
        merge(&path, &admin(dir.path()), true).unwrap();
        assert_eq!(
            current_context(&path).as_deref(),
            Some("autoscaling-lab-local")
        );
        let bad = dir.path().join("bad");
        fs::write(&bad, "- just\n- a list\n").unwrap();
        let err = merge(&bad, &admin(dir.path()), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a kubeconfig"), "{err}");
    }
}
