//! The synthetic ESM data set: cases and security events, deterministic from a seed.
//!
//! Only compact records are stored (ids, timestamps, event lists and a per-record seed); the JSON
//! a client sees is rendered on demand from those records, so 20,000 cases cost a few megabytes
//! and two data sets built from the same seed serve byte-identical answers.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

/// Fixed origin of every generated timestamp (2024-02-21T21:20:00Z, the fixtures' era): answers
/// must not depend on the clock, or two runs with the same seed would differ.
pub const EPOCH_MS: i64 = 1_708_550_400_000;

/// `Long.MIN_VALUE`, ESM's "no value" for long fields.
const NULL_LONG: i64 = i64::MIN;
/// `Integer.MIN_VALUE`, ESM's "no value" for int fields.
const NULL_INT: i64 = i32::MIN as i64;
/// `Double.MIN_VALUE` as ESM prints it, its "no value" for double fields.
const NULL_DOUBLE: &str = "4.9E-324";

/// Event ids at or above this do not fit an `f64` exactly.
pub const ABOVE_F64_EXACT: i64 = 1 << 53;

/// SplitMix64: tiny, fast, and stable across platforms and crate versions (a dependency's RNG
/// could change its stream in a minor release and silently change every data set).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; the slight modulo bias is irrelevant here).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Debug, Clone)]
struct CaseRec {
    id: String,
    display_id: u64,
    created_ms: i64,
    modified_ms: i64,
    modification_count: u64,
    event_ids: Vec<i64>,
    /// Seeds the rendering of everything not stored (name, severity, stage, ...).
    attrs: u64,
}

#[derive(Debug, Clone)]
struct EventRec {
    attrs: u64,
    start_ms: i64,
    end_ms: i64,
    /// Non-empty for a CORRELATION event.
    base_ids: Vec<i64>,
}

/// Cases and events of one simulated ESM, mutable at run time for incremental-sync tests.
#[derive(Debug, Clone)]
pub struct DataSet {
    events_per_case: usize,
    rng: Rng,
    /// Creation order; `None` once deleted (positions stay stable for `by_id`).
    cases: Vec<Option<CaseRec>>,
    by_id: HashMap<String, usize>,
    events: HashMap<i64, EventRec>,
    /// Source of new `modifiedTimestamp`s: strictly above every timestamp handed out so far.
    clock_ms: i64,
    next_display_id: u64,
}

/// Builds the data set for `seed`: pure and deterministic (same arguments, same answers).
///
/// Most cases carry `events_per_case` events, the last of which (when there are two or more)
/// is a CORRELATION event over the others; every tenth case (ordinal 1, 11, 21, ...) has no
/// event and every tenth (ordinal 2, 12, ...) exactly one, so the scalar and missing forms of
/// `eventIDs` always occur.
pub fn dataset(seed: u64, cases: usize, events_per_case: usize) -> DataSet {
    let mut ds = DataSet {
        events_per_case,
        rng: Rng::new(seed ^ 0x005E_ED0F_E5A1),
        cases: Vec::with_capacity(cases),
        by_id: HashMap::with_capacity(cases),
        events: HashMap::with_capacity(cases.saturating_mul(events_per_case)),
        clock_ms: EPOCH_MS,
        next_display_id: 10_001,
    };
    for _ in 0..cases {
        ds.push_case();
    }
    ds
}

impl DataSet {
    fn events_for_ordinal(&self, ordinal: usize) -> usize {
        if self.events_per_case == 0 {
            return 0;
        }
        match ordinal % 10 {
            1 => 0,
            2 => 1,
            _ => self.events_per_case,
        }
    }

    fn new_case_id(&mut self) -> String {
        loop {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
            bytes[8..].copy_from_slice(&self.rng.next_u64().to_be_bytes());
            // ESM ids are base64 with '-' where '/' would be (e.g. `12ax-uGgBABCWb2puJdY8ZA==`);
            // '+' stays, so clients must percent-encode ids in query strings.
            let id = STANDARD.encode(bytes).replace('/', "-");
            if !self.by_id.contains_key(&id) {
                return id;
            }
        }
    }

    fn new_event_id(&mut self) -> i64 {
        loop {
            let r = self.rng.next_u64();
            // A quarter above 2^53: clients that parse ids through f64 lose them.
            let id = if r % 4 == 0 {
                ABOVE_F64_EXACT + ((r >> 8) % (1 << 60)) as i64
            } else {
                10_000_000 + ((r >> 8) % 90_000_000_000) as i64
            };
            if !self.events.contains_key(&id) {
                return id;
            }
        }
    }

    /// Creates `n` events for a case created at `created_ms`; the last one correlates the others
    /// when `correlate` and there are at least two.
    fn new_events(&mut self, created_ms: i64, n: usize, correlate: bool) -> Vec<i64> {
        let mut ids = Vec::with_capacity(n);
        for j in 0..n {
            let id = self.new_event_id();
            let attrs = self.rng.next_u64();
            let rec = if correlate && n >= 2 && j == n - 1 {
                let bases: Vec<&EventRec> = ids.iter().filter_map(|b| self.events.get(b)).collect();
                let start_ms = bases.iter().map(|e| e.start_ms).min().unwrap_or(created_ms);
                let end_ms = bases.iter().map(|e| e.end_ms).max().unwrap_or(created_ms);
                EventRec {
                    attrs,
                    start_ms,
                    end_ms,
                    base_ids: ids.clone(),
                }
            } else {
                let start_ms =
                    created_ms - 3_600_000 + j as i64 * 60_000 + self.rng.below(50_000) as i64;
                let end_ms = start_ms + self.rng.below(1_000) as i64;
                EventRec {
                    attrs,
                    start_ms,
                    end_ms,
                    base_ids: Vec::new(),
                }
            };
            self.events.insert(id, rec);
            ids.push(id);
        }
        ids
    }

    fn tick(&mut self) -> i64 {
        self.clock_ms += 1_000;
        self.clock_ms
    }

    fn push_case(&mut self) -> String {
        let ordinal = self.cases.len();
        let id = self.new_case_id();
        let created_ms = self.tick() + self.rng.below(60_000) as i64;
        // Some cases were edited after creation, some never.
        let modified_ms = if self.rng.below(3) == 0 {
            created_ms
        } else {
            created_ms + 1 + self.rng.below(600_000) as i64
        };
        self.clock_ms = self.clock_ms.max(modified_ms);
        let n = self.events_for_ordinal(ordinal);
        let event_ids = self.new_events(created_ms, n, true);
        let rec = CaseRec {
            id: id.clone(),
            display_id: self.next_display_id,
            created_ms,
            modified_ms,
            modification_count: 1 + self.rng.below(50),
            event_ids,
            attrs: self.rng.next_u64(),
        };
        self.next_display_id += 1;
        self.by_id.insert(id.clone(), ordinal);
        self.cases.push(Some(rec));
        id
    }

    fn case_mut(&mut self, id: &str) -> Option<&mut CaseRec> {
        let pos = *self.by_id.get(id)?;
        self.cases.get_mut(pos)?.as_mut()
    }

    fn case(&self, id: &str) -> Option<&CaseRec> {
        self.cases.get(*self.by_id.get(id)?)?.as_ref()
    }

    /// Case ids in creation order, as `findAllIds` lists them.
    pub fn case_ids(&self) -> Vec<String> {
        self.cases.iter().flatten().map(|c| c.id.clone()).collect()
    }

    /// Number of (not deleted) cases.
    pub fn case_count(&self) -> usize {
        self.by_id.len()
    }

    /// A case's event ids, in the order `getCaseEventIDs` lists them.
    pub fn case_event_ids(&self, id: &str) -> Option<Vec<i64>> {
        self.case(id).map(|c| c.event_ids.clone())
    }

    /// The case as served (the object inside `return`), or `None` when unknown.
    pub fn case_json(&self, id: &str) -> Option<Value> {
        self.case(id).map(render_case)
    }

    /// The known events among `ids`, as served (objects inside `return`), in the order asked.
    pub fn events_json(&self, ids: &[i64]) -> Vec<Value> {
        ids.iter()
            .filter_map(|id| self.events.get(id).map(|e| render_event(*id, e)))
            .collect()
    }

    /// Like [`Self::events_json`], keeping only events overlapping `[start_ms, end_ms]`
    /// (a negative bound means unbounded, as `-1` does for ESM).
    pub fn events_json_between(&self, ids: &[i64], start_ms: i64, end_ms: i64) -> Vec<Value> {
        ids.iter()
            .filter_map(|id| self.events.get(id).map(|e| (id, e)))
            .filter(|(_, e)| {
                (start_ms < 0 || e.end_ms >= start_ms) && (end_ms < 0 || e.start_ms <= end_ms)
            })
            .map(|(id, e)| render_event(*id, e))
            .collect()
    }

    /// Gives a case a new `modifiedTimestamp`: above its previous one and above every timestamp
    /// handed out so far, so a watermark always sees the change.
    pub fn touch_case(&mut self, id: &str) -> bool {
        let next = self.tick();
        let Some(case) = self.case_mut(id) else {
            return false;
        };
        case.modified_ms = next.max(case.modified_ms + 1);
        case.modification_count += 1;
        let modified = case.modified_ms;
        self.clock_ms = self.clock_ms.max(modified);
        true
    }

    /// Sets a case's `modifiedTimestamp` to `ms`, whatever it was, as an edit does (the
    /// `modificationCount` goes up); the clock is left alone, so later edits may be older.
    pub fn set_case_modified(&mut self, id: &str, ms: i64) -> bool {
        let Some(case) = self.case_mut(id) else {
            return false;
        };
        case.modified_ms = ms;
        case.modification_count += 1;
        true
    }

    /// Adds `n` BASE events to a case (which, as in ESM, modifies the case).
    pub fn add_events(&mut self, case_id: &str, n: usize) -> bool {
        let Some(created_ms) = self.case(case_id).map(|c| c.created_ms) else {
            return false;
        };
        let ids = self.new_events(created_ms, n, false);
        if let Some(case) = self.case_mut(case_id) {
            case.event_ids.extend(ids);
        }
        self.touch_case(case_id)
    }

    /// Links `n` new events to a case without touching it.
    pub fn link_events_silently(&mut self, case_id: &str, n: usize) -> bool {
        let Some(created_ms) = self.case(case_id).map(|c| c.created_ms) else {
            return false;
        };
        let ids = self.new_events(created_ms, n, false);
        match self.case_mut(case_id) {
            Some(case) => {
                case.event_ids.extend(ids);
                true
            }
            None => false,
        }
    }

    /// Adds `n` cases shaped like the initial ones; returns their ids.
    pub fn add_cases(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.push_case()).collect()
    }

    /// Adds a case with a chosen id and stamps (with one event); `false` when the id exists.
    /// For ids whose hashes collide, and cases that differ only by id.
    pub fn add_case_with_id(
        &mut self,
        id: &str,
        created_ms: i64,
        modified_ms: i64,
        modification_count: u64,
    ) -> bool {
        if self.by_id.contains_key(id) {
            return false;
        }
        let ordinal = self.cases.len();
        let event_ids = self.new_events(created_ms, 1, true);
        let rec = CaseRec {
            id: id.to_owned(),
            display_id: self.next_display_id,
            created_ms,
            modified_ms,
            modification_count,
            event_ids,
            attrs: self.rng.next_u64(),
        };
        self.next_display_id += 1;
        self.by_id.insert(id.to_owned(), ordinal);
        self.cases.push(Some(rec));
        true
    }

    /// Deletes a case (its events stay, as ESM keeps events independently of cases).
    pub fn delete_case(&mut self, id: &str) -> bool {
        match self.by_id.remove(id) {
            Some(pos) => self.cases.get_mut(pos).and_then(Option::take).is_some(),
            None => false,
        }
    }
}

/// One element as the bare element, none as `None`, several as an array: how ESM renders lists.
pub fn esm_list(mut items: Vec<Value>) -> Option<Value> {
    match items.len() {
        0 => None,
        1 => items.pop(),
        _ => Some(Value::Array(items)),
    }
}

struct CaseTemplate {
    name: &'static str,
    folder: &'static str,
    description: &'static str,
}

const CASE_TEMPLATES: &[CaseTemplate] = &[
    CaseTemplate {
        name: "VPN brute force",
        folder: "SOC",
        description: "Repeated VPN logon failures followed by a success from a new country.",
    },
    CaseTemplate {
        name: "Malware beacon to known C2",
        folder: "SOC",
        description: "Periodic HTTPS beacons; dropper found at C:\\Users\\Public\\Downloads\\upd.exe.",
    },
    CaseTemplate {
        name: "Awaiting triage",
        folder: "SOC",
        description: "New correlation hit, not yet reviewed.",
    },
    CaseTemplate {
        name: "Suspicious PowerShell",
        folder: "Endpoint",
        description: "Encoded command run from C:\\Windows\\Temp\\a.ps1 by a service account.",
    },
    CaseTemplate {
        name: "Lateral movement over SMB",
        folder: "Endpoint",
        description: "Admin share access \\\\fileserver\\C$ from a workstation.",
    },
    CaseTemplate {
        name: "Data exfiltration over DNS",
        folder: "Network",
        description: "Long TXT queries to a newly registered domain.",
    },
    CaseTemplate {
        name: "Privileged account misuse",
        folder: "Identity",
        description: "Domain admin logon outside the change window.",
    },
    CaseTemplate {
        name: "Phishing email reported",
        folder: "Email",
        description: "User reported an invoice lure; attachment saved to C:\\Users\\bob\\Documents\\inv.docm.",
    },
];

const SEVERITIES: &[&str] = &[
    "NONE",
    "INSIGNIFICANT",
    "MARGINAL",
    "CRITICAL",
    "CATASTROPHIC",
];
const STAGES: &[&str] = &["QUEUED", "INITIAL", "FOLLOW_UP", "FINAL", "CLOSED"];
const TICKET_TYPES: &[&str] = &["INTERNAL", "CLIENT", "INCIDENT"];
const FREQUENCIES: &[&str] = &[
    "NEVER_OR_ONCE",
    "LESS_THAN_AN_HOUR",
    "LESS_THAN_A_DAY",
    "LESS_THAN_A_WEEK",
];
const IMPACTS: &[&str] = &[
    "NO_IMPACT",
    "NO_IMMEDIATE_IMPACT",
    "LOW_PRIORITY_IMPACT",
    "HIGH_PRIORITY_IMPACT",
    "IMMEDIATE_IMPACT",
];
const AGENTS: &[&str] = &["INSIDER", "OUTSIDER", "COLLABORATIVE"];
const ANALYSTS: &[&str] = &["admin", "analyst1", "soc-l2"];

fn render_case(c: &CaseRec) -> Value {
    let mut rng = Rng::new(c.attrs);
    let t = rng.pick(CASE_TEMPLATES);
    let name = format!("{} #{}", t.name, c.display_id);
    let uri = format!("/All Cases/All Cases/{}/{}", t.folder, name);
    let creator = *rng.pick(ANALYSTS);
    let mut m = Map::new();
    m.insert("URI".into(), json!(uri));
    m.insert("resourceid".into(), json!(c.id));
    m.insert("name".into(), json!(name));
    m.insert("createdTimestamp".into(), json!(c.created_ms));
    m.insert("modifiedTimestamp".into(), json!(c.modified_ms));
    m.insert("createdTime".into(), local_time(c.created_ms));
    m.insert("consequenceSeverity".into(), json!(rng.pick(SEVERITIES)));
    m.insert("stage".into(), json!(rng.pick(STAGES)));
    m.insert("ticketType".into(), json!(rng.pick(TICKET_TYPES)));
    m.insert("displayID".into(), json!(c.display_id));
    if let Some(ids) = esm_list(c.event_ids.iter().map(|i| json!(i)).collect()) {
        m.insert("eventIDs".into(), ids);
    }
    m.insert("creatorName".into(), json!(creator));
    m.insert("modifierName".into(), json!(rng.pick(ANALYSTS)));
    m.insert("modificationCount".into(), json!(c.modification_count));
    // Real cases often have no description at all.
    if rng.below(5) != 0 {
        m.insert("description".into(), json!(t.description));
    }
    m.insert("frequency".into(), json!(rng.pick(FREQUENCIES)));
    m.insert("operationalImpact".into(), json!(rng.pick(IMPACTS)));
    m.insert("attackAgent".into(), json!(rng.pick(AGENTS)));
    m.insert(
        "localID".into(),
        json!(30_064_771_000i64 + c.display_id as i64),
    );
    m.insert(
        "reference".into(),
        json!({
            "id": c.id, "isModifiable": true, "managerID": "A1xxqmYBABCAXZPTkLg+BA==",
            "referenceName": "Case", "referenceType": 7, "uri": uri,
            "referenceString": format!("<Resource URI=\"{uri}\" ID=\"{}\"/>", c.id),
        }),
    );
    m.insert("type".into(), json!(7));
    m.insert("typeName".into(), json!("Case"));
    Value::Object(m)
}

/// ESM's `*Time` object: manager-local time with a 0-based month. The simulated manager runs
/// in UTC so the object is computable without a time zone database.
fn local_time(ms: i64) -> Value {
    use chrono::{Datelike, Timelike};
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => json!({
            "day": t.day(), "hour": t.hour(), "milliSecond": ms.rem_euclid(1000), "minute": t.minute(),
            "month": t.month0(), "second": t.second(), "timezoneID": "UTC", "year": t.year(),
        }),
        None => Value::Null,
    }
}

struct EventTemplate {
    name: &'static str,
    message: &'static str,
    product: &'static str,
    vendor: &'static str,
    class_id: &'static str,
    action: &'static str,
    behavior: &'static str,
    object: &'static str,
}

const EVENT_TEMPLATES: &[EventTemplate] = &[
    EventTemplate {
        name: "VPN Logon Failure",
        message: "Authentication failed for user {user}",
        product: "ASA",
        vendor: "Cisco",
        class_id: "113015",
        action: "deny",
        behavior: "/Authentication/Verify",
        object: "/Host/Application/Service",
    },
    EventTemplate {
        name: "VPN Logon Success",
        message: "User {user} logged on",
        product: "ASA",
        vendor: "Cisco",
        class_id: "113004",
        action: "permit",
        behavior: "/Authentication/Verify",
        object: "/Host/Application/Service",
    },
    EventTemplate {
        name: "Process Created",
        message: "Process Create: C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe -enc SQBFAFgA",
        product: "Sysmon",
        vendor: "Microsoft",
        class_id: "Microsoft-Windows-Sysmon:1",
        action: "Process Create",
        behavior: "/Execute/Start",
        object: "/Host/Resource/Process",
    },
    EventTemplate {
        name: "Suspicious command",
        message: "cmd.exe /c copy C:\\Users\\{user}\\secrets.txt \\\\fileserver\\share",
        product: "Sysmon",
        vendor: "Microsoft",
        class_id: "Microsoft-Windows-Sysmon:1",
        action: "Process Create",
        behavior: "/Execute/Start",
        object: "/Host/Resource/Process",
    },
    EventTemplate {
        name: "Firewall Deny",
        message: "Denied outbound connection",
        product: "PAN-OS",
        vendor: "Palo Alto Networks",
        class_id: "TRAFFIC:deny",
        action: "deny",
        behavior: "/Communicate/Query",
        object: "/Host/Application",
    },
    EventTemplate {
        name: "DNS query to newly registered domain",
        message: "Query for a4f1.example-cdn.top",
        product: "DNS Server",
        vendor: "Microsoft",
        class_id: "DNS:256",
        action: "query",
        behavior: "/Communicate/Query",
        object: "/Host/Application/Service",
    },
];

const CORRELATION_RULES: &[&str] = &[
    "Brute force then success",
    "Beacon pattern",
    "Multiple suspicious processes",
    "Policy violation burst",
];
const USERS: &[&str] = &["alice", "bob", "carol", "svc_backup", "TEST"];
const HOSTS: &[&str] = &[
    "ws042.corp.local",
    "dc01.corp.local",
    "vpn-gw.corp.local",
    "db01.corp.local",
    "fileserver.corp.local",
];
const DEVICE_SEVERITIES: &[&str] = &["Information", "Low", "Medium", "High", "Very-High"];

fn render_event(id: i64, e: &EventRec) -> Value {
    let mut rng = Rng::new(e.attrs);
    let mut m = Map::new();
    m.insert("eventId".into(), json!(id));
    let receipt = e.end_ms + rng.below(5_000) as i64;
    if !e.base_ids.is_empty() {
        let rule = *rng.pick(CORRELATION_RULES);
        m.insert("name".into(), json!(rule));
        m.insert(
            "message".into(),
            json!(format!("Correlated: {} base events", e.base_ids.len())),
        );
        m.insert("type".into(), json!("CORRELATION"));
        m.insert("priority".into(), json!(7 + rng.below(4)));
        m.insert("agentSeverity".into(), json!(5 + rng.below(5)));
        m.insert("startTime".into(), json!(e.start_ms));
        m.insert("endTime".into(), json!(e.end_ms));
        m.insert("managerReceiptTime".into(), json!(receipt));
        m.insert("correlatedEventCount".into(), json!(e.base_ids.len()));
        if let Some(ids) = esm_list(e.base_ids.iter().map(|i| json!(i)).collect()) {
            m.insert("baseEventIds".into(), ids);
        }
        m.insert("category".into(), json!({"behavior": "/Found/Vulnerable", "deviceGroup": "/IDS/Host", "significance": "/Suspicious"}));
        m.insert(
            "device".into(),
            json!({"product": "ArcSight", "vendor": "ArcSight"}),
        );
        return Value::Object(m);
    }
    let t = rng.pick(EVENT_TEMPLATES);
    let user = *rng.pick(USERS);
    m.insert("name".into(), json!(t.name));
    m.insert("message".into(), json!(t.message.replace("{user}", user)));
    m.insert("type".into(), json!("BASE"));
    m.insert("priority".into(), json!(1 + rng.below(10)));
    m.insert("severity".into(), json!(0));
    m.insert("agentSeverity".into(), json!(rng.below(10)));
    m.insert("deviceSeverity".into(), json!(rng.pick(DEVICE_SEVERITIES)));
    m.insert("startTime".into(), json!(e.start_ms));
    m.insert("endTime".into(), json!(e.end_ms));
    m.insert("managerReceiptTime".into(), json!(receipt));
    m.insert("baseEventCount".into(), json!(1));
    m.insert("persistence".into(), json!(NULL_INT));
    m.insert("deviceAction".into(), json!(t.action));
    m.insert("deviceEventClassId".into(), json!(t.class_id));
    m.insert(
        "category".into(),
        json!({"behavior": t.behavior, "deviceGroup": "/Operating System", "object": t.object, "outcome": "/Success", "significance": "/Informational"}),
    );
    let agent_host = *rng.pick(HOSTS);
    let agent_ip = private_ipv4(&mut rng);
    m.insert(
        "agent".into(),
        json!({"address": agent_ip, "addressAsBytes": STANDARD.encode(agent_ip.to_be_bytes()), "hostName": agent_host, "type": "winc", "version": "8.4.2.9113.0"}),
    );
    m.insert("source".into(), endpoint(&mut rng, Some(user), None));
    let dest_host = *rng.pick(HOSTS);
    m.insert(
        "destination".into(),
        endpoint(&mut rng, None, Some(dest_host)),
    );
    m.insert(
        "device".into(),
        json!({"product": t.product, "vendor": t.vendor, "hostName": agent_host}),
    );
    m.insert("deviceCustomFloatingPoint1".into(), json!(NULL_DOUBLE));
    m.insert("deviceCustomNumber1".into(), json!(NULL_LONG));
    // ESM sometimes sends a string field as a number.
    if rng.below(3) == 0 {
        m.insert("deviceCustomString2".into(), json!(1));
    }
    Value::Object(m)
}

fn private_ipv4(rng: &mut Rng) -> u32 {
    let r = rng.next_u64() as u32;
    match rng.below(3) {
        0 => 0x0A00_0000 | (r & 0x00FF_FFFF), // 10.0.0.0/8
        1 => 0xC0A8_0000 | (r & 0x0000_FFFF), // 192.168.0.0/16
        _ => 0xCB00_7100 | (r & 0x0000_00FF), // 203.0.113.0/24
    }
}

/// A source or destination in one of the shapes ESM sends: IPv4 as integer and bytes, IPv4 as
/// integer only, IPv6 as bytes only, or the null sentinels.
fn endpoint(rng: &mut Rng, user: Option<&str>, host: Option<&str>) -> Value {
    let mut m = Map::new();
    match rng.below(10) {
        0..=5 => {
            let ip = private_ipv4(rng);
            m.insert("address".into(), json!(ip));
            m.insert(
                "addressAsBytes".into(),
                json!(STANDARD.encode(ip.to_be_bytes())),
            );
            m.insert("port".into(), json!(1024 + rng.below(60_000)));
        }
        6 => {
            m.insert("address".into(), json!(private_ipv4(rng)));
            m.insert(
                "port".into(),
                json!(*rng.pick(&[22u64, 443, 445, 1433, 3389])),
            );
        }
        7 => {
            // 2001:db8::/32, the documentation prefix.
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            b[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
            m.insert("addressAsBytes".into(), json!(STANDARD.encode(b)));
        }
        _ => {
            m.insert("address".into(), json!(NULL_LONG));
            m.insert("port".into(), json!(NULL_INT));
            m.insert("processId".into(), json!(1000 + rng.below(30_000)));
        }
    }
    if let Some(u) = user {
        m.insert("userName".into(), json!(u));
    }
    if let Some(h) = host {
        m.insert("hostName".into(), json!(h));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let a = dataset(7, 30, 4);
        let b = dataset(7, 30, 4);
        let c = dataset(8, 30, 4);
        assert_eq!(a.case_ids(), b.case_ids());
        assert_ne!(a.case_ids(), c.case_ids());
        for id in a.case_ids() {
            assert_eq!(a.case_json(&id), b.case_json(&id));
            let ev = a.case_event_ids(&id).unwrap_or_default();
            assert_eq!(a.events_json(&ev), b.events_json(&ev));
        }
    }

    #[test]
    fn case_ids_are_24_char_base64_and_unique() {
        let ds = dataset(1, 500, 1);
        let ids = ds.case_ids();
        let unique: HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), 500);
        for id in &ids {
            assert_eq!(id.len(), 24, "{id}");
            assert!(id.ends_with("=="), "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-=".contains(&b)),
                "{id}"
            );
        }
    }

    #[test]
    fn touch_is_strictly_increasing_and_above_everything() {
        let mut ds = dataset(3, 20, 2);
        let ids = ds.case_ids();
        let max_before = ids
            .iter()
            .filter_map(|i| ds.case_json(i)?["modifiedTimestamp"].as_i64())
            .max()
            .unwrap_or(0);
        let mut last = max_before;
        for id in ids.iter().take(5).chain(ids.iter().take(5)) {
            assert!(ds.touch_case(id));
            let now = ds
                .case_json(id)
                .and_then(|c| c["modifiedTimestamp"].as_i64())
                .unwrap_or(0);
            assert!(now > last, "{now} > {last}");
            last = now;
        }
        assert!(!ds.touch_case("nope"));
    }

    #[test]
    fn deleted_cases_disappear_and_added_ones_appear_last() {
        let mut ds = dataset(3, 5, 2);
        let first = ds.case_ids()[0].clone();
        assert!(ds.delete_case(&first));
        assert!(!ds.delete_case(&first));
        assert!(ds.case_json(&first).is_none());
        let new = ds.add_cases(2);
        let ids = ds.case_ids();
        assert_eq!(ids.len(), 6);
        assert_eq!(&ids[4..], &new[..]);
    }

    #[test]
    fn esm_list_renders_one_as_scalar_and_none_as_missing() {
        assert_eq!(esm_list(vec![]), None);
        assert_eq!(esm_list(vec![json!(1)]), Some(json!(1)));
        assert_eq!(esm_list(vec![json!(1), json!(2)]), Some(json!([1, 2])));
    }
}
