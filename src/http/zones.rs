//! ListAvailableZones: `GET /v2/available-zones` (no project in the path, as DMS serves it), the
//! zones CreateInstance accepts in `available_zones` ([`crate::domain::zones`]).

use axum::Json;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::Caller;
use super::routes::{Op, op};
use crate::domain::Action;
use crate::wire::zone::AvailableZones;

pub fn operations() -> Vec<Op> {
    vec![op(routes!(list))]
}

/// ListAvailableZones → `{"region_id", "available_zones": [{"id","code","name","port",
/// "resource_availability","default_az","soldOut","remain_time","ipv6_enable"}]}`, with DMS's
/// types (`port` and `resource_availability` are strings; `soldOut` is spelt so).
#[utoipa::path(
    get,
    path = "/v2/available-zones",
    operation_id = "ListAvailableZones",
    tag = "Instances",
    responses((status = 200, description = "The zones instances may be created in", body = AvailableZones)),
)]
pub(super) async fn list(caller: Caller) -> Result<Json<AvailableZones>, ApiError> {
    caller.require(Action::GetInstance)?;
    Ok(Json(AvailableZones::offered()))
}
