//! Server-side apply of YAML documents (the addons), as `kubectl apply --server-side` does, through discovery so any
//! kind the API server serves can be applied.

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};

/// The field manager the cluster's own objects are applied with.
pub const FIELD_MANAGER: &str = "autoscaling-lab-cluster";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("document {index}: {why}")]
    Document { index: usize, why: String },
    #[error("applying {kind} {name}: {source}")]
    Api {
        kind: String,
        name: String,
        source: kube::Error,
    },
}

/// Applies every document of `yaml` (separated by `---`), in order.
pub async fn apply_yaml(client: &Client, yaml: &str) -> Result<usize, ApplyError> {
    let mut applied = 0;
    for (index, document) in serde_norway::Deserializer::from_str(yaml).enumerate() {
        let value =
            serde_norway::Value::deserialize(document).map_err(|e| ApplyError::Document {
                index,
                why: e.to_string(),
            })?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject =
            serde_norway::from_value(value).map_err(|e| ApplyError::Document {
                index,
                why: e.to_string(),
            })?;
        let types = object.types.clone().ok_or_else(|| ApplyError::Document {
            index,
            why: "no apiVersion/kind".into(),
        })?;
        let gvk = GroupVersionKind::try_from(&types).map_err(|e| ApplyError::Document {
            index,
            why: e.to_string(),
        })?;
        let name = object.metadata.name.clone().unwrap_or_default();
        let api_err = |source| ApplyError::Api {
            kind: types.kind.clone(),
            name: name.clone(),
            source,
        };
        let (resource, caps) = discovery::pinned_kind(client, &gvk)
            .await
            .map_err(api_err)?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                object.metadata.namespace.as_deref().unwrap_or("default"),
                &resource,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(api_err)?;
        applied += 1;
    }
    Ok(applied)
}

use serde::Deserialize as _;
