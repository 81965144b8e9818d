//! ComponentStatus (v1, deprecated since 1.19 but still served): never written by clients, only
//! computed by the API server; this is its printer (`kubectl get componentstatuses`).

use k8s_openapi::api::core::v1::ComponentStatus;
use serde_json::{json, Value};

use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};

const COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Status", "string", "Status of the component conditions"),
    Column::new("Message", "string", "Message of the component conditions"),
    Column::new("Error", "string", "Error of the component conditions"),
];

impl KindHooks for ComponentStatus {
    fn columns() -> &'static [Column] {
        COLUMNS
    }

    /// As upstream's printComponentStatus: the Healthy condition decides, "Unknown" without one.
    fn row(&self, _ctx: &RowContext) -> Vec<Value> {
        let mut status = "Unknown";
        let (mut message, mut error) = ("", "");
        for c in self.conditions.iter().flatten() {
            if c.type_ == "Healthy" {
                status = if c.status == "True" {
                    "Healthy"
                } else {
                    "Unhealthy"
                };
                message = c.message.as_deref().unwrap_or("");
                error = c.error.as_deref().unwrap_or("");
                break;
            }
        }
        vec![
            json!(self.metadata.name.as_deref().unwrap_or("")),
            json!(status),
            json!(message),
            json!(error),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ComponentCondition;

    #[test]
    fn rows_show_the_healthy_condition() {
        let mut cs = ComponentStatus::default();
        cs.metadata.name = Some("etcd-0".into());
        assert_eq!(cs.row(&RowContext::now())[1], "Unknown");
        cs.conditions = Some(vec![ComponentCondition {
            type_: "Healthy".into(),
            status: "False".into(),
            message: None,
            error: Some("database is locked".into()),
        }]);
        assert_eq!(
            cs.row(&RowContext::now()),
            vec![
                json!("etcd-0"),
                json!("Unhealthy"),
                json!(""),
                json!("database is locked")
            ]
        );
    }
}
