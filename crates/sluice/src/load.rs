//! Loading what every verb needs — config, data dir, catalog, compiled engine, CA — so that the
//! CLI sees exactly what the running gateway sees.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sluice_policy::catalog::Catalog;
use sluice_policy::config::Config;
use sluice_policy::engine::Engine;

use crate::{Args, Failure};

/// What replaces the configuration file's `[[policy]]` tables in [`with_policies`].
pub(crate) enum PolicySource<'a> {
    /// `<data-dir>/policy.json` when it exists (start, reload, every CLI verb).
    DataDir,
    /// This `{"policies": [...]}` document, about to be stored there (admin `PUT`).
    Document(&'a str),
    /// The configuration file's own tables (admin `DELETE`).
    ConfigFile,
}

/// The effective configuration, as the running gateway sees it: the configuration file with
/// its `[[policy]]` list replaced by `<data-dir>/policy.json` when that file exists (written
/// by `PUT /api/policy`). Every verb that decides (`run`, `check`, `policy test`, `what-if`,
/// `config check --data-dir`) goes through here, so they all agree on the precedence.
pub(crate) fn effective(args: &Args) -> Result<Config, Failure> {
    // Without any data dir (no flag, no $HOME) there is no override to apply.
    let dir = data_dir(args).ok();
    with_policies(config(args)?, dir.as_deref(), PolicySource::DataDir)
}

/// Applies the policy override rule of [`effective`] to a configuration file's contents.
pub(crate) fn with_policies(
    mut config: Config,
    data_dir: Option<&Path>,
    source: PolicySource<'_>,
) -> Result<Config, Failure> {
    let Some(dir) = data_dir else {
        return Ok(config);
    };
    let path = dir.join(sluice_policy::config::POLICY_FILE);
    let result = match source {
        PolicySource::DataDir => config.apply_policy_file(&path).map(|_| ()),
        PolicySource::Document(text) => config.apply_policy_json(text, &path),
        PolicySource::ConfigFile => Ok(()),
    };
    result.map_err(|issues| {
        let lines: Vec<String> = issues
            .iter()
            .map(|i| format!("{}: {i}", path.display()))
            .collect();
        Failure::usage(format!(
            "invalid policy override (it replaces the config file's [[policy]]; fix or \
             delete it):\n{}",
            lines.join("\n")
        ))
    })?;
    Ok(config)
}

/// The configuration from `--config`, or the embedded default (without the policy override:
/// see [`effective`]).
pub(crate) fn config(args: &Args) -> Result<Config, Failure> {
    config_file(args.config.as_deref())
}

/// The configuration file `path`, or the embedded default.
pub(crate) fn config_file(path: Option<&Path>) -> Result<Config, Failure> {
    match path {
        None => Ok(Config::default()),
        Some(path) => Config::load(path).map_err(|issues| {
            let lines: Vec<String> = issues
                .iter()
                .map(|i| format!("{}: {i}", path.display()))
                .collect();
            Failure::usage(format!("invalid configuration:\n{}", lines.join("\n")))
        }),
    }
}

/// The data directory (DESIGN.md "Files and defaults").
pub(crate) fn data_dir(args: &Args) -> Result<PathBuf, Failure> {
    if let Some(d) = &args.data_dir {
        return Ok(d.clone());
    }
    if let Some(d) = std::env::var_os("SLUICE_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("sluice"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/sluice")),
        None => Err(Failure::usage(
            "no data directory: pass --data-dir or set SLUICE_DATA_DIR",
        )),
    }
}

/// The built-in catalog plus `catalog.extra` files.
pub(crate) fn catalog(config: &Config) -> Result<Catalog, Failure> {
    let mut catalog =
        Catalog::builtin().map_err(|e| Failure::runtime(format!("built-in catalog: {e}")))?;
    for path in &config.catalog_extra {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("catalog.extra: {}: {e}", path.display())))?;
        let apps = Catalog::parse(&text, &path.display().to_string())
            .map_err(|e| Failure::usage(format!("catalog.extra: {e}")))?;
        catalog.merge(apps);
    }
    Ok(catalog)
}

/// Compiles the engine, loading category lists (`<dir>/<category>/domains`).
pub(crate) fn engine(config: &Config, catalog: &Catalog) -> Result<Engine, Failure> {
    let mut builder = Engine::builder(config, catalog);
    for dir in &config.category_lists {
        load_category_dir(&mut builder, dir)
            .map_err(|e| Failure::usage(format!("catalog.category_lists: {e:#}")))?;
    }
    Ok(builder.build())
}

fn load_category_dir(
    builder: &mut sluice_policy::engine::EngineBuilder<'_>,
    dir: &Path,
) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("{}", dir.display()))?;
        let file = entry.path().join("domains");
        if !file.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
        let (_, bad) = builder.add_category_list(&name, &text);
        if bad > 0 {
            tracing::warn!(file = %file.display(), skipped = bad, "category list lines that are not domains were skipped");
        }
    }
    Ok(())
}

/// Cross-checks what the config names against the catalog and category lists: an unknown
/// application id is an error (a typo would silently exempt nothing); an unknown category and
/// an expired exception are warnings. Returns the warnings.
pub(crate) fn references(
    config: &Config,
    catalog: &Catalog,
    engine: &Engine,
) -> Result<Vec<String>, Failure> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for p in &config.policies {
        for lists in [&p.bypass, &p.block] {
            for e in &lists.apps {
                if catalog.get(&e.value).is_none() {
                    errors.push(format!(
                        "{}: unknown application `{}` (see `sluice apps list`)",
                        e.origin, e.text
                    ));
                }
            }
            for e in &lists.categories {
                if !engine.known_category(&e.value) {
                    warnings.push(format!(
                        "{}: category `{}` is in no catalog app or category list",
                        e.origin, e.text
                    ));
                }
            }
            let expired = lists
                .domains
                .iter()
                .map(|e| (&e.origin, &e.text, e.expires))
                .chain(lists.apps.iter().map(|e| (&e.origin, &e.text, e.expires)))
                .chain(
                    lists
                        .categories
                        .iter()
                        .map(|e| (&e.origin, &e.text, e.expires)),
                );
            for (origin, text, expires) in expired {
                if expires.is_some_and(|x| x <= now) {
                    warnings.push(format!(
                        "{origin}: exception `{text}` has expired and no longer applies"
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(warnings)
    } else {
        Err(Failure::usage(format!(
            "invalid configuration:\n{}",
            errors.join("\n")
        )))
    }
}

/// The CA: configured files, or the data dir's (created on first run when `create`).
pub(crate) fn ca(config: &Config, data_dir: &Path) -> Result<sluice_tls::ca::Ca, Failure> {
    let result = match (&config.ca.cert, &config.ca.key) {
        (Some(cert), Some(key)) => sluice_tls::ca::Ca::load(cert, key),
        _ => sluice_tls::ca::Ca::load_or_create(data_dir),
    };
    result.map_err(|e| Failure::runtime(format!("CA: {e}")))
}

/// The CA as it is on disk now, never creating one: what a reload checks. A generated CA that
/// has gone missing is an error, not a reason to make a new one clients would not trust.
pub(crate) fn existing_ca(
    config: &Config,
    data_dir: &Path,
) -> Result<sluice_tls::ca::Ca, sluice_tls::ca::CaError> {
    match (&config.ca.cert, &config.ca.key) {
        (Some(cert), Some(key)) => sluice_tls::ca::Ca::load(cert, key),
        _ => {
            let dir = data_dir.join("ca");
            sluice_tls::ca::Ca::load(
                &dir.join(sluice_tls::ca::CA_CERT_FILE),
                &dir.join(sluice_tls::ca::CA_KEY_FILE),
            )
        }
    }
}

/// Proxy authentication from `auth.htpasswd`, every bad line reported.
pub(crate) fn auth(config: &Config) -> Result<Option<sluice_proxy::auth::Auth>, Failure> {
    let Some(path) = &config.htpasswd else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("auth.htpasswd: {}: {e}", path.display())))?;
    let file = path.display().to_string();
    let htpasswd = sluice_policy::htpasswd::Htpasswd::parse(&text, &file).map_err(|issues| {
        let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
        Failure::usage(format!("auth.htpasswd:\n{}", lines.join("\n")))
    })?;
    Ok(Some(sluice_proxy::auth::Auth::new(
        htpasswd,
        config.auth_realm.clone(),
    )))
}
