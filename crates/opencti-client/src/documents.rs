//! Every GraphQL document the client sends, verbatim from the platform protocol (see
//! `tests/opencti.rs`, which validates each one against the platform schema).

pub(crate) const HEALTH_CHECK: &str = "query healthCheck { about { version } }";

pub(crate) const REGISTER_CONNECTOR: &str = r#"mutation RegisterConnector($input: RegisterConnectorInput) {
  registerConnector(input: $input) {
    id
    connector_state
    connector_state_timestamp
    config {
      connection { host vhost use_ssl port user pass }
      listen listen_routing listen_exchange
      push push_routing push_exchange
    }
    connector_user_id
  }
}"#;

/// Unlike pycti's, it does not ask for `connector_state` back: the echo is the whole state
/// (16 MB at 1,000,000 cases) at every ping. A reset is told by `connector_state_timestamp`,
/// which the platform writes when it creates the connector and at each `resetStateConnector`,
/// never at a ping (see docs/design.md, State).
pub(crate) const PING_CONNECTOR: &str = r#"mutation PingConnector($id: ID!, $state: String, $connectorInfo: ConnectorInfoInput) {
  pingConnector(id: $id, state: $state, connectorInfo: $connectorInfo) {
    id
    connector_state_timestamp
    connector_info { run_and_terminate buffering queue_threshold queue_messages_size next_run_datetime last_run_datetime }
  }
}"#;

pub(crate) const WORK_ADD: &str = r#"mutation workAdd($connectorId: String!, $friendlyName: String) {
  workAdd(connectorId: $connectorId, friendlyName: $friendlyName) { id }
}"#;

pub(crate) const WORK_TO_PROCESSED: &str = r#"mutation workToProcessed($id: ID!, $message: String, $inError: Boolean) {
  workEdit(id: $id) { toProcessed(message: $message, inError: $inError) }
}"#;

pub(crate) const ADD_EXPECTATIONS: &str = r#"mutation addExpectations($id: ID!, $expectations: Int) {
  workEdit(id: $id) { addExpectations(expectations: $expectations) }
}"#;

pub(crate) const REPORT_EXPECTATION: &str = r#"mutation reportExpectation($id: ID!, $error: WorkErrorInput) {
  workEdit(id: $id) { reportExpectation(error: $error) }
}"#;

pub(crate) const STIX_BUNDLE_PUSH: &str = r#"mutation StixBundlePush($connectorId: String!, $bundle: String!, $work_id: String) {
  stixBundlePush(connectorId: $connectorId, bundle: $bundle, work_id: $work_id)
}"#;

pub(crate) const GET_CONNECTOR_QUEUE: &str = r#"query GetConnector($id: String!) {
  connector(id: $id) { id connector_queue_details { messages_number messages_size } }
}"#;

/// What the platform made of a work: `null` once it is deleted (an operator cleared the
/// connector's works, or the platform purged it), when its workers drop its messages.
pub(crate) const WORK_FATE: &str = r#"query WorkFate($id: ID!) {
  work(id: $id) { id status errors { source message } }
}"#;

/// Which of these case-incident standard ids the platform holds.
pub(crate) const CASE_INCIDENTS_BY_STANDARD_ID: &str = r#"query CaseIncidentsByStandardId($ids: [Any!]!, $first: Int) {
  caseIncidents(first: $first, filters: {mode: and, filters: [{key: ["standard_id"], values: $ids}], filterGroups: []}) {
    edges { node { standard_id } }
  }
}"#;

/// Every document above: the schema test iterates this list, so a document missing here is
/// a document nobody validated.
pub const DOCUMENTS: &[&str] = &[
    HEALTH_CHECK,
    REGISTER_CONNECTOR,
    PING_CONNECTOR,
    WORK_ADD,
    WORK_TO_PROCESSED,
    ADD_EXPECTATIONS,
    REPORT_EXPECTATION,
    STIX_BUNDLE_PUSH,
    GET_CONNECTOR_QUEUE,
    WORK_FATE,
    CASE_INCIDENTS_BY_STANDARD_ID,
];
