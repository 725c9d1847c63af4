//! ServiceAccounts (`serviceaccount-controller`): every namespace has a ServiceAccount named
//! `default`, made when the namespace appears and made again when it is deleted, as
//! kube-controller-manager's does. Pods name it when they name none (admission).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::informer::{Change, Informer};
use crate::replicaset::api_message;

pub const DEFAULT: &str = "default";

pub struct ServiceAccounts {
    client: Client,
}

impl ServiceAccounts {
    pub fn new(
        client: Client,
        namespaces: &Informer<Namespace>,
        accounts: &Informer<ServiceAccount>,
    ) -> Arc<Self> {
        let sa = Arc::new(ServiceAccounts { client });
        let weak = Arc::downgrade(&sa);
        namespaces.on_change(move |change| {
            if let (Some(sa), Change::Added(ns) | Change::Updated { new: ns, .. }) =
                (weak.upgrade(), change)
                && ns.metadata.deletion_timestamp.is_none()
            {
                sa.ensure(ns.name_any(), false);
            }
        });
        let weak = Arc::downgrade(&sa);
        accounts.on_change(move |change| {
            if let (Some(sa), Change::Deleted(acct)) = (weak.upgrade(), change)
                && acct.name_any() == DEFAULT
            {
                sa.ensure(acct.namespace().unwrap_or_default(), true);
            }
        });
        sa
    }

    /// Create `default` in `ns` unless it is there (a 409 says it is, a 403 or 404 that the
    /// namespace is going away).
    fn ensure(self: &Arc<Self>, ns: String, recreate: bool) {
        let client = self.client.clone();
        tokio::spawn(async move {
            let api: Api<ServiceAccount> = Api::namespaced(client, &ns);
            if !recreate && matches!(api.get_opt(DEFAULT).await, Ok(Some(_))) {
                return;
            }
            let mut sa = ServiceAccount::default();
            sa.metadata.name = Some(DEFAULT.into());
            match api.create(&PostParams::default(), &sa).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if matches!(e.code, 409 | 403 | 404) => {}
                Err(e) => {
                    tracing::debug!(namespace = %ns, error = %api_message(&e), "default service account not made")
                }
            }
        });
    }

    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        stop.cancelled().await;
    }
}
