// KEDA for the local cluster (its operator, metrics adapter and admission webhooks), pinned here. KEDA's own go.mod
// has one replace and one exclude, which a module that requires it must repeat (Go applies only the main module's).
// v2.21.0: v2.21.1 needs Go 1.27.4, and these machines have 1.26.8.
module autoscaling-lab/cluster/upstream/keda

go 1.26.0

replace github.com/nexus-rpc/nexus-proto-annotations v0.1.0 => github.com/nexus-rpc/nexus-proto-annotations v0.1.1-0.20260629224316-835bd8d49cb4

exclude github.com/go-chi/chi/v5 v5.2.3
