//! The gateway's config file as a test builds it: harness defaults (port 0 listeners, the test
//! hosts file, the test root, access log on stdout) plus whatever the test adds.
//!
//! The file is built as one TOML document, not by string concatenation, so a test never emits
//! a table twice: every [`GatewayConfig::extra_toml`] fragment is parsed and *merged* into the
//! defaults, in call order with [`GatewayConfig::set`] and [`GatewayConfig::remove`]:
//! - tables merge key by key, recursively (`[proxy]\nnon_tls = "tunnel"` keeps the harness's
//!   `proxy.listen`);
//! - arrays of tables append (`[[policy]]` fragments accumulate);
//! - any other value replaces (so `upstream.extra_roots = [...]` replaces the harness's list;
//!   use [`GatewayConfig::extra_root`] to add one).
//!
//! Comments and line numbers of fragments are not preserved; a test about config errors and
//! their line numbers writes its own file and runs `sluice config check` on it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use crate::pki::TestPki;

/// How long [`super::TestGateway`] waits for the ready line by default.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a test wants the gateway to run with.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub(super) hosts: Vec<(String, IpAddr)>,
    extra_roots: Vec<PathBuf>,
    edits: Vec<Edit>,
    pub(super) env: Vec<(String, String)>,
    pub(super) files: Vec<(PathBuf, Vec<u8>)>,
    pub(super) ready_timeout: Duration,
}

/// One change to the harness defaults, applied in order.
#[derive(Clone, Debug)]
enum Edit {
    Merge(Table),
    Set(String, Value),
    Remove(String),
}

// === impl GatewayConfig ===

impl Default for GatewayConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayConfig {
    /// Harness defaults only: no hosts, no extra roots.
    pub fn new() -> Self {
        Self {
            hosts: Vec::new(),
            extra_roots: Vec::new(),
            edits: Vec::new(),
            env: Vec::new(),
            files: Vec::new(),
            ready_timeout: READY_TIMEOUT,
        }
    }

    /// Harness defaults trusting `pki`'s root for upstream servers (`upstream.extra_roots`).
    pub fn for_pki(pki: &TestPki) -> Self {
        Self::new().extra_root(pki.root_pem_path())
    }

    /// Resolve each name to 127.0.0.1 through the gateway's hosts file.
    pub fn hosts(mut self, names: &[&str]) -> Self {
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        self.hosts
            .extend(names.iter().map(|n| ((*n).to_owned(), local)));
        self
    }

    /// Resolve `name` to `ip` (keep it in 127.0.0.0/8) through the gateway's hosts file.
    pub fn host(mut self, name: &str, ip: IpAddr) -> Self {
        self.hosts.push((name.to_owned(), ip));
        self
    }

    /// Also trust this PEM file for upstream servers.
    pub fn extra_root(mut self, pem: &Path) -> Self {
        self.extra_roots.push(pem.to_path_buf());
        self
    }

    /// Merge a TOML fragment into the config (see the module doc for the rules). Panics if the
    /// fragment is not TOML.
    pub fn extra_toml(mut self, fragment: &str) -> Self {
        let table: Table = fragment
            .parse()
            .unwrap_or_else(|e| panic!("extra_toml fragment is not valid TOML: {e}\n{fragment}"));
        self.edits.push(Edit::Merge(table));
        self
    }

    /// Set one key by dotted path, e.g. `set("pinning.mode", "learn")`, creating tables.
    pub fn set(mut self, key_path: &str, value: impl Into<Value>) -> Self {
        self.edits
            .push(Edit::Set(key_path.to_owned(), value.into()));
        self
    }

    /// Allow CONNECT to these ports (`proxy.connect_ports`; the gateway's default is 443 only,
    /// and test origins listen on ephemeral ports): `.connect_ports(&[origin.port()])`.
    pub fn connect_ports(self, ports: &[u16]) -> Self {
        let ports: Vec<Value> = ports
            .iter()
            .map(|p| Value::Integer(i64::from(*p)))
            .collect();
        self.set("proxy.connect_ports", Value::Array(ports))
    }

    /// Remove one key by dotted path, including a harness default (e.g. `log.access`, to see
    /// the gateway's own default at work).
    pub fn remove(mut self, key_path: &str) -> Self {
        self.edits.push(Edit::Remove(key_path.to_owned()));
        self
    }

    /// Set an environment variable for the gateway and CLI runs (e.g. `RUST_LOG`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Write `contents` to `relative_path` inside the gateway's work dir before it starts
    /// (an htpasswd file, a catalog, category lists). The gateway runs with the work dir as
    /// its current directory, next to its config file, so the config can name the file by
    /// that relative path.
    pub fn file(mut self, relative_path: &str, contents: impl AsRef<[u8]>) -> Self {
        let path = PathBuf::from(relative_path);
        assert!(
            path.is_relative(),
            "file() takes a path relative to the work dir"
        );
        self.files.push((path, contents.as_ref().to_vec()));
        self
    }

    /// Wait this long for the ready line (default 30 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// The config file contents for a gateway whose hosts file is at `hosts_file`.
    pub fn render(&self, hosts_file: &Path) -> String {
        toml::to_string(&self.table(hosts_file)).expect("config table serializes to TOML")
    }

    /// The config as a TOML table, defaults and edits applied.
    pub fn table(&self, hosts_file: &Path) -> Table {
        let mut table = self.defaults(hosts_file);
        for edit in &self.edits {
            match edit {
                Edit::Merge(fragment) => merge(&mut table, fragment.clone()),
                Edit::Set(path, value) => set_path(&mut table, path, value.clone()),
                Edit::Remove(path) => remove_path(&mut table, path),
            }
        }
        table
    }

    /// The hosts file contents (`/etc/hosts` format).
    pub fn hosts_file(&self) -> String {
        let mut out = String::from("# written by sluice-test-support\n");
        for (name, ip) in &self.hosts {
            out.push_str(&format!("{ip}\t{name}\n"));
        }
        out
    }

    fn defaults(&self, hosts_file: &Path) -> Table {
        let roots: Vec<Value> = self
            .extra_roots
            .iter()
            .map(|p| Value::String(p.to_string_lossy().into_owned()))
            .collect();
        let mut t = Table::new();
        set_path(
            &mut t,
            "proxy.listen",
            Value::Array(vec!["127.0.0.1:0".into()]),
        );
        set_path(&mut t, "admin.listen", "127.0.0.1:0".into());
        set_path(
            &mut t,
            "upstream.hosts_file",
            hosts_file.to_string_lossy().into_owned().into(),
        );
        set_path(&mut t, "upstream.extra_roots", Value::Array(roots));
        set_path(&mut t, "upstream.allow_private", true.into());
        set_path(&mut t, "log.access", "-".into());
        t
    }
}

// === TOML editing ===

/// Deep-merges `from` into `into` (tables merge, arrays of tables append, the rest replaces).
fn merge(into: &mut Table, from: Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Table(old)), Value::Table(new)) => merge(old, new),
            (Some(Value::Array(old)), Value::Array(new))
                if is_table_array(old) && is_table_array(&new) =>
            {
                old.extend(new);
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

fn is_table_array(values: &[Value]) -> bool {
    !values.is_empty() && values.iter().all(Value::is_table)
}

fn set_path(table: &mut Table, path: &str, value: Value) {
    let (parents, leaf) = split_path(path);
    let mut cur = table;
    for part in parents {
        let entry = cur
            .entry(part.to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        cur = entry
            .as_table_mut()
            .unwrap_or_else(|| panic!("config key {part:?} in {path:?} is not a table"));
    }
    cur.insert(leaf.to_owned(), value);
}

fn remove_path(table: &mut Table, path: &str) {
    let (parents, leaf) = split_path(path);
    let mut cur = table;
    for part in parents {
        match cur.get_mut(part).and_then(Value::as_table_mut) {
            Some(next) => cur = next,
            None => return,
        }
    }
    cur.remove(leaf);
}

fn split_path(path: &str) -> (Vec<&str>, &str) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let leaf = parts.pop().expect("split yields at least one part");
    assert!(!leaf.is_empty(), "empty config key path {path:?}");
    (parts, leaf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(cfg: &GatewayConfig) -> Table {
        let text = cfg.render(Path::new("/tmp/x/hosts"));
        text.parse()
            .unwrap_or_else(|e| panic!("rendered config reparses: {e}\n{text}"))
    }

    #[test]
    fn defaults_are_port_zero_and_loopback() {
        let t = render(&GatewayConfig::new().extra_root(Path::new("/pki/root.pem")));
        assert_eq!(t["proxy"]["listen"][0].as_str(), Some("127.0.0.1:0"));
        assert_eq!(t["admin"]["listen"].as_str(), Some("127.0.0.1:0"));
        assert_eq!(t["upstream"]["hosts_file"].as_str(), Some("/tmp/x/hosts"));
        assert_eq!(
            t["upstream"]["extra_roots"][0].as_str(),
            Some("/pki/root.pem")
        );
        assert_eq!(t["upstream"]["allow_private"].as_bool(), Some(true));
        assert_eq!(t["log"]["access"].as_str(), Some("-"));
    }

    #[test]
    fn fragments_merge_instead_of_repeating_tables() {
        let cfg = GatewayConfig::new()
            .extra_toml("[proxy]\nnon_tls = \"tunnel\"\n[[policy]]\nname = \"a\"\n")
            .extra_toml("[[policy]]\nname = \"default\"\ndecrypt = false\n")
            .set("pinning.mode", "learn")
            .connect_ports(&[443, 8443])
            .remove("upstream.allow_private");
        let text = cfg.render(Path::new("/h"));
        assert_eq!(text.matches("[proxy]").count(), 1, "{text}");
        let t = render(&cfg);
        assert_eq!(t["proxy"]["listen"][0].as_str(), Some("127.0.0.1:0"));
        assert_eq!(t["proxy"]["non_tls"].as_str(), Some("tunnel"));
        let policies = t["policy"].as_array().expect("policy array");
        assert_eq!(policies.len(), 2);
        assert_eq!(policies[1]["decrypt"].as_bool(), Some(false));
        assert_eq!(t["pinning"]["mode"].as_str(), Some("learn"));
        assert_eq!(t["proxy"]["connect_ports"][1].as_integer(), Some(8443));
        assert!(t["upstream"].get("allow_private").is_none());
    }

    #[test]
    fn hosts_file_maps_names_to_loopback() {
        let cfg = GatewayConfig::new()
            .hosts(&["zoom.us", "origin.test"])
            .host("b.test", "127.0.1.6".parse().expect("ip"));
        let hosts = cfg.hosts_file();
        assert!(hosts.contains("127.0.0.1\tzoom.us\n"), "{hosts}");
        assert!(hosts.contains("127.0.0.1\torigin.test\n"), "{hosts}");
        assert!(hosts.contains("127.0.1.6\tb.test\n"), "{hosts}");
    }
}
