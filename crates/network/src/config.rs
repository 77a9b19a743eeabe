//! The network file: what a client needs to join a network, and the `[network]` table every
//! node's config shares with it (name, epoch period, packet geometry, directory authorities).
//!
//! Reading is two steps: serde parses the text into a raw mirror (every table
//! `deny_unknown_fields`), then validation turns it into parsed types. Every [`ConfigError`]
//! names the file, the field (a dotted path such as `network.authorities[1].link_key`) and what
//! to do about it. The node's config (`qanat-node`) reuses the parsing helpers here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use qanat_link::LinkPublicKey;
use qanat_packet::{Geometry, Scheme};
use qanat_pki::descriptor::LinkAddress;
use qanat_pki::identity::IDENTITY_KEY_LEN;
use qanat_pki::{AuthoritySet, EpochPeriod, IdentityKey, MAX_AUTHORITIES};
use serde::Deserialize;

/// An error in a node's configuration. Its `Display` names the file, the field and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the config file: {source}; check the path given to --config", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A field is missing, misspelt, of the wrong type or has an invalid value.
    #[error("{}{field}: {problem}; {fix}", file_prefix(path.as_deref()))]
    Invalid {
        /// The file, when the config came from one.
        path: Option<PathBuf>,
        /// The field, as a dotted path (`network.authorities[1].link_key`).
        field: String,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// The field asks for something this version of Qanat does not do yet.
    #[error("{}{field}: {what} is not yet supported; {fix}", file_prefix(path.as_deref()))]
    Unsupported {
        /// The file, when the config came from one.
        path: Option<PathBuf>,
        /// The field.
        field: String,
        /// What is not supported.
        what: String,
        /// How to do without it.
        fix: String,
    },
}

fn file_prefix(path: Option<&Path>) -> String {
    path.map(|p| format!("{}: ", p.display())).unwrap_or_default()
}

impl ConfigError {
    /// The field at fault, if the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Read { .. } => None,
            Self::Invalid { field, .. } | Self::Unsupported { field, .. } => Some(field),
        }
    }

    /// The error, naming `file`.
    pub fn with_path(mut self, file: &Path) -> Self {
        match &mut self {
            Self::Read { .. } => {}
            Self::Invalid { path, .. } | Self::Unsupported { path, .. } => *path = Some(file.to_owned()),
        }
        self
    }
}

/// An [`ConfigError::Invalid`] for `field`: what is wrong and how to fix it.
pub fn invalid(field: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { path: None, field: field.into(), problem: problem.into(), fix: fix.into() }
}

/// The `[network]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkConfig {
    /// The network's name (bound into every link handshake).
    pub name: String,
    /// The epoch period.
    pub epoch_period: EpochPeriod,
    /// The directory authorities, in the order written.
    pub authorities: Vec<AuthorityPeer>,
    /// Their identity keys as the set that signs directory documents.
    pub authority_set: AuthoritySet,
    /// The packet geometry (scheme, hops, payload length) of the network.
    pub geometry: Geometry,
}

/// One directory authority as other nodes know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityPeer {
    /// Its Ed25519 identity key.
    pub identity: IdentityKey,
    /// Its link public key.
    pub link_key: LinkPublicKey,
    /// Its link address.
    pub address: LinkAddress,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// The raw `[network]` table, as serde reads it; [`parse_network`] validates it.
#[allow(missing_docs)]
pub struct RawNetwork {
    name: String,
    epoch_period_secs: Option<u64>,
    scheme: Option<String>,
    nr_hops: Option<usize>,
    forward_payload_len: Option<usize>,
    authorities: Vec<RawAuthorityPeer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthorityPeer {
    identity_key: String,
    link_key: String,
    address: String,
}

/// The scheme a new network uses when `[network]` names none: X25519 KEM. Its 732-byte SURBs fit
/// in a packet's 1,536-byte payload (X-Wing's 7,260-byte SURBs do not, and would need 16 KB
/// packets); links are already hybrid post-quantum (see docs/PROTOCOL.md, "Default scheme").
pub const DEFAULT_SCHEME: Scheme = Scheme::X25519Kem;

const MAX_NETWORK_NAME: usize = 64;

/// The fix for a bad key.
pub const SHOW_KEYS: &str = "copy it from that node's 'qanat node show-keys' output";

/// Maps a TOML or serde error to the field at its position.
pub fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_owned();
    let missing = message.strip_prefix("missing field `").and_then(|m| m.split('`').next());
    let (field, location) = match (e.span(), missing) {
        // The span of a missing field is its table (the whole file for the top level).
        (Some(span), Some(name)) if span.start == 0 => (join_field("", Some(name)), String::new()),
        (Some(span), Some(name)) => {
            (join_field(&table_at(text, span.start).0, Some(name)), line_col(text, span.start))
        }
        (Some(span), None) => (field_at(text, span.start), line_col(text, span.start)),
        (None, _) => ("(file)".to_owned(), String::new()),
    };
    let fix = if message.starts_with("unknown field") {
        "remove it or correct its spelling (see 'qanat node example-config')"
    } else if message.starts_with("missing field") {
        "add it (see 'qanat node example-config' for every field and its default)"
    } else {
        "correct the value (see 'qanat node example-config' for the expected form)"
    };
    invalid(field, format!("{location}{message}"), fix)
}

fn line_col(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}: ")
}

/// The dotted key at `offset`: the enclosing `[table]` header plus the key on that line.
fn field_at(text: &str, offset: usize) -> String {
    let (table, line) = table_at(text, offset);
    let key = line.split('=').next().map(str::trim).filter(|k| !k.is_empty() && !k.starts_with(['[', '#']));
    join_field(&table, key)
}

fn join_field(table: &str, key: Option<&str>) -> String {
    match (table.is_empty(), key) {
        (true, Some(k)) => k.to_owned(),
        (false, Some(k)) => format!("{table}.{k}"),
        (false, None) => table.to_owned(),
        (true, None) => "(top level)".to_owned(),
    }
}

/// The table in force at `offset` (counting a header on that very line) and that line.
fn table_at(text: &str, offset: usize) -> (String, &str) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..).and_then(|l| l.lines().next()).unwrap_or("").trim();
    let mut table = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut headers: Vec<&str> = text.get(..line_start).unwrap_or("").lines().collect();
    if line.starts_with('[') {
        headers.push(line);
    }
    for l in headers {
        let l = l.trim();
        if let Some(h) = l.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            let h = h.trim().to_owned();
            let n = match counts.iter_mut().find(|(k, _)| *k == h) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    counts.push((h.clone(), 0));
                    0
                }
            };
            table = format!("{h}[{n}]");
        } else if let Some(h) = l.strip_prefix('[').and_then(|h| h.split(']').next()) {
            table = h.trim().to_owned();
        }
    }
    (table, line)
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    let name_ok = !name.is_empty()
        && name.len() <= MAX_NETWORK_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(invalid(
            "network.name",
            format!("{name:?} is not a network name"),
            "use 1 to 64 lower-case letters, digits and '-', the same on every node of the network",
        ));
    }
    Ok(())
}

fn authority_set(authorities: &[AuthorityPeer]) -> Result<AuthoritySet, ConfigError> {
    AuthoritySet::new(authorities.iter().map(|a| a.identity))
        .map_err(|e| invalid("network.authorities", e.to_string(), "list each directory authority once"))
}

impl NetworkConfig {
    /// A `[network]` table built in code (a generated test network, an example): checked as a
    /// file's table is, for the name and the authorities (1 to [`MAX_AUTHORITIES`], each once).
    pub fn new(
        name: impl Into<String>,
        epoch_period: EpochPeriod,
        authorities: Vec<AuthorityPeer>,
        geometry: Geometry,
    ) -> Result<Self, ConfigError> {
        let name = name.into();
        check_name(&name)?;
        let authority_set = authority_set(&authorities)?;
        Ok(Self { name, epoch_period, authorities, authority_set, geometry })
    }

    /// Writes the `[network]` table and one `[[network.authorities]]` table per authority,
    /// commented, as every node's config and the clients' network file hold them;
    /// [`parse_network`] reads them back equal.
    pub fn write_toml(&self, s: &mut String) {
        let g = &self.geometry;
        // Writing to a String cannot fail.
        let _ = writeln!(s, "[network]");
        let _ = writeln!(s, "# The same on every node of the network.");
        let _ = writeln!(s, "name = {}", toml_str(&self.name));
        let _ = writeln!(s, "epoch_period_secs = {}", self.epoch_period.as_millis() / 1000);
        let _ = writeln!(
            s,
            "# Packet scheme: \"xwing\" (hybrid post-quantum), \"x25519-kem\" or \"x25519-nike\"."
        );
        let _ = writeln!(s, "scheme = \"{}\"", g.scheme().name());
        let _ =
            writeln!(s, "# Sphinx hops (gateway, mix layers, gateway) and payload bytes; with the scheme");
        let _ = writeln!(s, "# they fix every packet's size ({} bytes here).", g.packet_len());
        let _ = writeln!(s, "nr_hops = {}", g.nr_hops());
        let _ = writeln!(s, "forward_payload_len = {}", g.forward_payload_len());
        for a in &self.authorities {
            let _ = writeln!(s, "\n# One table per directory authority (from its 'qanat node show-keys').");
            let _ = writeln!(s, "[[network.authorities]]");
            let _ = writeln!(s, "identity_key = \"{}\"", hex::encode(a.identity.as_bytes()));
            let _ = writeln!(s, "link_key = \"{}\"", hex::encode(a.link_key.to_bytes()));
            let _ = writeln!(s, "address = {}", toml_str(a.address.as_str()));
        }
    }
}

/// Parses a `host:port` link address.
pub fn parse_address(field: &str, s: &str) -> Result<LinkAddress, ConfigError> {
    LinkAddress::parse(s).map_err(|e| {
        invalid(
            field,
            format!("{s:?} is not a valid host:port address ({e})"),
            "write a lower-case DNS name, an IPv4 address or a bracketed IPv6 address, then ':' and a port 1-65535, e.g. \"127.0.0.1:7000\"",
        )
    })
}

/// Parses `len` bytes written in hex.
pub fn parse_hex(field: &str, s: &str, len: usize, what: &str, fix: &str) -> Result<Vec<u8>, ConfigError> {
    let s = s.trim();
    if s.len() != 2 * len {
        return Err(invalid(
            field,
            format!("expected {} hex characters ({what}), got {}", 2 * len, s.len()),
            fix,
        ));
    }
    hex::decode(s).map_err(|_| invalid(field, format!("is not hexadecimal ({what})"), fix))
}

/// Parses an Ed25519 identity key written in hex.
pub fn parse_identity(field: &str, s: &str) -> Result<IdentityKey, ConfigError> {
    let bytes = parse_hex(field, s, IDENTITY_KEY_LEN, "a 32-byte Ed25519 identity key", SHOW_KEYS)?;
    let arr: [u8; IDENTITY_KEY_LEN] =
        bytes.try_into().map_err(|_| invalid(field, "wrong length", SHOW_KEYS))?;
    IdentityKey::from_bytes(&arr).map_err(|_| invalid(field, "is not a valid Ed25519 public key", SHOW_KEYS))
}

/// Validates the `[network]` table.
pub fn parse_network(raw: RawNetwork) -> Result<NetworkConfig, ConfigError> {
    check_name(&raw.name)?;
    let secs = raw.epoch_period_secs.unwrap_or(EpochPeriod::DEFAULT.as_millis() / 1000);
    let epoch_period = EpochPeriod::from_secs(secs).map_err(|_| {
        invalid(
            "network.epoch_period_secs",
            format!("{secs} is outside 1..=86400 seconds"),
            "use the network's epoch period (default 1200), the same on every node",
        )
    })?;
    if raw.authorities.is_empty() || raw.authorities.len() > MAX_AUTHORITIES {
        return Err(invalid(
            "network.authorities",
            format!("{} authorities listed, expected 1 to {MAX_AUTHORITIES}", raw.authorities.len()),
            "add one [[network.authorities]] table per directory authority of the network",
        ));
    }
    let mut authorities = Vec::with_capacity(raw.authorities.len());
    for (i, a) in raw.authorities.iter().enumerate() {
        let f = |k: &str| format!("network.authorities[{i}].{k}");
        let identity = parse_identity(&f("identity_key"), &a.identity_key)?;
        let link_bytes = parse_hex(
            &f("link_key"),
            &a.link_key,
            LinkPublicKey::LEN,
            &format!("a {}-byte link public key", LinkPublicKey::LEN),
            "copy it from that authority's 'qanat node show-keys' output",
        )?;
        let link_key = LinkPublicKey::from_bytes(&link_bytes).map_err(|e| {
            invalid(f("link_key"), format!("is not a valid link public key ({e})"), SHOW_KEYS)
        })?;
        let address = parse_address(&f("address"), &a.address)?;
        if authorities.iter().any(|p: &AuthorityPeer| p.identity == identity) {
            return Err(invalid(
                f("identity_key"),
                "the same authority is listed twice",
                "remove the duplicate [[network.authorities]] table",
            ));
        }
        authorities.push(AuthorityPeer { identity, link_key, address });
    }
    let authority_set = authority_set(&authorities)?;
    let scheme = match raw.scheme.as_deref() {
        None => DEFAULT_SCHEME,
        Some(name) => Scheme::from_name(name).ok_or_else(|| {
            invalid(
                "network.scheme",
                format!("unknown packet scheme {name:?}"),
                "use \"x25519-kem\" (the default), \"xwing\" or \"x25519-nike\", the same on every node",
            )
        })?,
    };
    let d = Geometry::default_for(scheme);
    let nr_hops = raw.nr_hops.unwrap_or(d.nr_hops());
    let payload = raw.forward_payload_len.unwrap_or(d.forward_payload_len());
    let geometry = Geometry::new(scheme, payload, nr_hops).map_err(|e| {
        let field =
            if raw.nr_hops.is_some() && Geometry::new(scheme, d.forward_payload_len(), nr_hops).is_err() {
                "network.nr_hops"
            } else {
                "network.forward_payload_len"
            };
        invalid(
            field,
            format!("no packet geometry with {nr_hops} hops and {payload}-byte payloads ({e})"),
            format!(
                "remove the line for the default ({} hops, {} bytes), the same on every node",
                d.nr_hops(),
                d.forward_payload_len()
            ),
        )
    })?;
    Ok(NetworkConfig { name: raw.name, epoch_period, authorities, authority_set, geometry })
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// The network file of clients.

/// A gateway that clients may use, as the network file lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGateway {
    /// A name to choose it by (`gw1`).
    pub name: String,
    /// Its identity key (its node id is derived from it).
    pub identity: IdentityKey,
    /// Its link public key.
    pub link_key: LinkPublicKey,
    /// The address clients dial.
    pub client_address: LinkAddress,
}

/// What a client needs to join a network: the nodes' `[network]` table (name, epoch period,
/// packet geometry, directory authorities) and the gateways it may use (`[[gateways]]`). Nothing
/// in it is secret; `qanat devnet up` writes one as `DIR/network.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientNetwork {
    /// The network.
    pub network: NetworkConfig,
    /// The gateways.
    pub gateways: Vec<ClientGateway>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientNetwork {
    network: RawNetwork,
    gateways: Vec<RawClientGateway>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientGateway {
    name: String,
    identity_key: String,
    link_key: String,
    client_address: String,
}

impl ClientNetwork {
    /// Reads and validates the network file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml_str(&text).map_err(|e| e.with_path(path))
    }

    /// Parses and validates network-file text.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let raw: RawClientNetwork = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let network = parse_network(raw.network)?;
        if raw.gateways.is_empty() {
            return Err(invalid(
                "gateways",
                "no gateway listed",
                "add one [[gateways]] table per gateway clients may use",
            ));
        }
        let mut gateways: Vec<ClientGateway> = Vec::new();
        for (i, g) in raw.gateways.iter().enumerate() {
            let f = |k: &str| format!("gateways[{i}].{k}");
            let link_bytes = parse_hex(
                &f("link_key"),
                &g.link_key,
                LinkPublicKey::LEN,
                &format!("a {}-byte link public key", LinkPublicKey::LEN),
                SHOW_KEYS,
            )?;
            let link_key = LinkPublicKey::from_bytes(&link_bytes).map_err(|e| {
                invalid(f("link_key"), format!("is not a valid link public key ({e})"), SHOW_KEYS)
            })?;
            if g.name.is_empty() || gateways.iter().any(|x| x.name == g.name) {
                return Err(invalid(f("name"), "empty or listed twice", "give each gateway its own name"));
            }
            gateways.push(ClientGateway {
                name: g.name.clone(),
                identity: parse_identity(&f("identity_key"), &g.identity_key)?,
                link_key,
                client_address: parse_address(&f("client_address"), &g.client_address)?,
            });
        }
        Ok(Self { network, gateways })
    }

    /// The file's text, which [`ClientNetwork::from_toml_str`] reads back.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ =
            writeln!(s, "# Qanat network file: what a client needs to join ('qanat init --network FILE').");
        let _ = writeln!(s, "# Nothing here is secret.\n");
        self.network.write_toml(&mut s);
        for gw in &self.gateways {
            let _ = writeln!(s, "\n[[gateways]]");
            let _ = writeln!(s, "name = {}", toml_str(&gw.name));
            let _ = writeln!(s, "identity_key = \"{}\"", hex::encode(gw.identity.as_bytes()));
            let _ = writeln!(s, "link_key = \"{}\"", hex::encode(gw.link_key.to_bytes()));
            let _ = writeln!(s, "client_address = {}", toml_str(gw.client_address.as_str()));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_follow_tables_and_arrays_of_tables() {
        let text = "a = 1\n[x]\nb = 2\n[[y.z]]\nc = 3\n[[y.z]]\nd = 4\n";
        assert_eq!(field_at(text, 0), "a");
        assert_eq!(field_at(text, text.find("b =").unwrap()), "x.b");
        assert_eq!(field_at(text, text.find("c =").unwrap()), "y.z[0].c");
        assert_eq!(field_at(text, text.find("d =").unwrap()), "y.z[1].d");
    }

    #[test]
    fn a_rendered_network_file_reads_back_equal() {
        use chacha20::ChaCha20Rng;
        use qanat_link::LinkSecretKey;
        use qanat_pki::IdentitySecret;
        use rand_core::SeedableRng as _;

        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let addr = |s: &str| LinkAddress::parse(s).unwrap();
        let authorities = (0..3)
            .map(|i| AuthorityPeer {
                identity: IdentitySecret::generate(&mut rng).public(),
                link_key: LinkSecretKey::generate(&mut rng).public_key().clone(),
                address: addr(&format!("127.0.0.1:{}", 7001 + i)),
            })
            .collect();
        let network = NetworkConfig::new(
            "test-net",
            EpochPeriod::from_secs(60).unwrap(),
            authorities,
            Geometry::default_for(Scheme::XWing),
        )
        .unwrap();
        let gateways = (0..2)
            .map(|i| ClientGateway {
                name: format!("gw{i}"),
                identity: IdentitySecret::generate(&mut rng).public(),
                link_key: LinkSecretKey::generate(&mut rng).public_key().clone(),
                client_address: addr(&format!("gw{i}.example:7201")),
            })
            .collect();
        let file = ClientNetwork { network, gateways };
        assert_eq!(ClientNetwork::from_toml_str(&file.render()).unwrap(), file);

        // What `new` refuses, a file's table is refused for too.
        let net = &file.network;
        let err =
            NetworkConfig::new("Bad Name", net.epoch_period, net.authorities.clone(), net.geometry.clone())
                .unwrap_err();
        assert_eq!(err.field(), Some("network.name"));
        let twice = vec![net.authorities[0].clone(), net.authorities[0].clone()];
        let err = NetworkConfig::new("n", net.epoch_period, twice, net.geometry.clone()).unwrap_err();
        assert_eq!(err.field(), Some("network.authorities"));
        let err = NetworkConfig::new("n", net.epoch_period, Vec::new(), net.geometry.clone()).unwrap_err();
        assert_eq!(err.field(), Some("network.authorities"));
    }
}
