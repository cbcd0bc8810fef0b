//! Limits on what a `config.yaml` may hold, so that a generated or hostile config is
//! refused with an error that says where, what limit, and how to raise it, instead of
//! exhausting the memory of `validate`, `submit` or the coordinator.
//!
//! Each limit is checked before the memory it guards is spent:
//! 1. reading: at most [`READ_CEILING`] bytes are read, and the text may hold at most
//!    `config_bytes`;
//! 2. a counting pass over the YAML ([`Limits::check_text`]) that builds no value: the
//!    length of each string, the items of each list and mapping (a sweep's values
//!    included), the nesting depth, and the size of all values once YAML aliases are
//!    expanded (a "billion laughs" file is a few hundred bytes that expand to
//!    gigabytes). It runs serde_yaml's own parser, so it sees exactly what the parse
//!    that follows will see;
//! 3. after parsing, each stage's job matrix (its jobs, and the size of its resolved
//!    jobs), computed arithmetically before anything is expanded ([`crate::job_matrix`]).
//!
//! The limits are raised by a top-level `limits:` block of the config itself: it travels
//! with the experiment, so the CLI and the coordinator, which loads the same file,
//! always agree. The block is found in the text before anything else is parsed.

use crate::config_error::ConfigError;
use crate::config_locate::{first_alias, line_column, locate, top_level_entry, At};
use serde::de::{self, DeserializeSeed, IgnoredAny, Visitor};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::Read;
use std::path::Path;

/// The most bytes of a config ever read; `config_bytes` cannot be raised past it.
pub const READ_CEILING: u64 = 64 << 20;
/// The deepest `nesting_depth` allowed: serde_yaml refuses nesting past 128 itself.
pub const MAX_NESTING_DEPTH: u64 = 100;
/// Once aliases are expanded, values may take this many times `config_bytes`.
pub const EXPANSION_FACTOR: u64 = 4;
/// What a value costs in the expansion budget and a stage's resolved jobs, a string
/// adding its length: a value takes several times this in memory once parsed, so the
/// budgets bound the memory without counting each allocation.
pub const VALUE_COST: u64 = 8;

/// The limits, with their defaults; a top-level `limits:` block overrides any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Bytes of the config file.
    pub config_bytes: u64,
    /// Bytes of one string (a key or a value).
    pub string_bytes: u64,
    /// Items of one list or entries of one mapping (a sweep path's values included).
    pub list_items: u64,
    /// Levels of lists and mappings inside one another.
    pub nesting_depth: u64,
    /// Jobs one stage expands to: variants × sweep points × seeds.
    pub jobs_per_stage: u64,
    /// Bytes of one stage's resolved jobs: one per variant and sweep point (seeds share
    /// it), measured like the expansion budget.
    pub stage_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            config_bytes: 4 << 20,
            string_bytes: 64 << 10,
            list_items: 10_000,
            nesting_depth: 32,
            jobs_per_stage: 100_000,
            stage_bytes: 64 << 20,
        }
    }
}

/// The hint's second half for a limit that can be raised.
pub fn how_to_raise(key: &str) -> String {
    format!(
        "or raise the limit with `limits: {{{key}: N}}` at the top level of config.yaml \
         (docs/config.md, \"Limits\")"
    )
}

/// Reads a config file, never more than [`READ_CEILING`] bytes of it.
pub fn read_config_text(path: &Path) -> Result<String, ConfigError> {
    let unreadable = |reason: String| ConfigError {
        file: path.to_owned(),
        line: 0,
        column: 0,
        message: format!("cannot read the config: {reason}"),
        hint: "run `expcluster init <idea>` to create an experiment with a config.yaml".into(),
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(READ_CEILING + 1).read_to_end(&mut bytes))
        .map_err(|err| unreadable(err.to_string()))?;
    if bytes.len() as u64 > READ_CEILING {
        let prefix = String::from_utf8_lossy(&bytes[..READ_CEILING as usize]);
        let (line, column) = line_column(&prefix, prefix.len());
        return Err(ConfigError {
            file: path.to_owned(),
            line,
            column,
            message: format!(
                "the config is longer than {READ_CEILING} bytes, the most expcluster reads"
            ),
            hint: "this limit cannot be raised: a config this long is generated, so generate \
                   a shorter one (fewer listed values) or split the experiment"
                .into(),
        });
    }
    String::from_utf8(bytes).map_err(|err| unreadable(err.to_string()))
}

/// The top-level `limits:` block as written, parsed on its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsBlock {
    limits: Limits,
}

impl Limits {
    /// The limits a config's text sets: its top-level `limits:` block (a key at the
    /// start of a line), else the defaults. Only that block is parsed, so the limits
    /// are known before the rest of the text is.
    pub fn of_text(text: &str, path: &Path) -> Result<Limits, ConfigError> {
        let Some(block) = top_level_entry(text, "limits") else {
            return Ok(Limits::default());
        };
        let lines_before = text[..block.start].matches('\n').count();
        let limits = serde_yaml::from_str::<LimitsBlock>(&text[block])
            .map_err(|err| {
                let (line, column) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
                ConfigError {
                    file: path.to_owned(),
                    line: line + lines_before,
                    column,
                    message: format!("`limits`: {}", message_of(&err)),
                    hint: "`limits` takes config_bytes, string_bytes, list_items, \
                           nesting_depth, jobs_per_stage and stage_bytes, each a whole \
                           number"
                        .into(),
                }
            })?
            .limits;
        limits.check_ceilings(text, path)?;
        Ok(limits)
    }

    fn check_ceilings(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        for (key, value, ceiling) in [
            ("config_bytes", self.config_bytes, READ_CEILING),
            ("nesting_depth", self.nesting_depth, MAX_NESTING_DEPTH),
        ] {
            if value > ceiling {
                let (line, column) =
                    locate(text, &[At::Key("limits"), At::Key(key), At::ValueOfKey]);
                return Err(ConfigError {
                    file: path.to_owned(),
                    line,
                    column,
                    message: format!("limits.{key} is {value}, more than its ceiling {ceiling}"),
                    hint: format!("use at most {ceiling}: this one cannot be raised further"),
                });
            }
        }
        Ok(())
    }

    /// Checks the text's length, then walks its YAML without building any value:
    /// strings, lists, mappings, nesting and the size once aliases are expanded.
    /// A syntax or type error is left to the parse that follows, which reports it.
    pub fn check_text(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        if text.len() as u64 > self.config_bytes {
            let mut at = self.config_bytes as usize;
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let (line, column) = line_column(text, at);
            return Err(ConfigError {
                file: path.to_owned(),
                line,
                column,
                message: format!(
                    "the config is {} bytes, more than the limit of {} (limits.config_bytes); \
                     this is where it passes the limit",
                    text.len(),
                    self.config_bytes
                ),
                hint: format!(
                    "a config this long is usually generated: list fewer values; {}",
                    how_to_raise("config_bytes")
                ),
            });
        }
        let budget = Budget {
            limits: self,
            spent: Cell::new(0),
            expansion_limit: self.config_bytes.saturating_mul(EXPANSION_FACTOR),
            hint: RefCell::new(None),
        };
        let walk = Count {
            budget: &budget,
            depth: 0,
        };
        let Err(err) = walk.deserialize(serde_yaml::Deserializer::from_str(text)) else {
            return Ok(());
        };
        let error = |(line, column), message, hint| ConfigError {
            file: path.to_owned(),
            line,
            column,
            message,
            hint,
        };
        if let Some(hint) = budget.hint.take() {
            let at = err.location().map_or((0, 0), |l| (l.line(), l.column()));
            return Err(error(at, message_of(&err), hint));
        }
        // serde_yaml's own guard against alias bombs: it stops after 100 alias jumps
        // per event, without a position; the first alias is where to look.
        if err.to_string().starts_with("repetition limit exceeded") {
            return Err(error(
                first_alias(text).unwrap_or((0, 0)),
                "YAML aliases repeat their anchors more than the parser allows".into(),
                alias_hint(),
            ));
        }
        Ok(())
    }
}

fn alias_hint() -> String {
    "an alias (`*name`) repeats all its anchor (`&name`) holds, so aliases of anchors that \
     hold aliases multiply (a \"billion laughs\" file): write the values out instead"
        .into()
}

/// serde_yaml's message without its ` at line L column C` suffix (the position is
/// carried separately), keeping the key path it starts with.
fn message_of(err: &serde_yaml::Error) -> String {
    let text = err.to_string();
    text.split(" at line ")
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The walk's shared state: what has been spent, and the hint of the limit exceeded
/// (the serde error carries only a message, so the hint waits here).
struct Budget<'l> {
    limits: &'l Limits,
    spent: Cell<u64>,
    expansion_limit: u64,
    hint: RefCell<Option<String>>,
}

impl Budget<'_> {
    fn exceed<E: de::Error>(&self, message: String, hint: String) -> E {
        *self.hint.borrow_mut() = Some(hint);
        E::custom(message)
    }

    fn spend<E: de::Error>(&self, extra: usize) -> Result<(), E> {
        let spent = self.spent.get() + VALUE_COST + extra as u64;
        self.spent.set(spent);
        if spent <= self.expansion_limit {
            return Ok(());
        }
        Err(self.exceed(
            format!(
                "the config's values take more than {} bytes once YAML aliases are \
                 expanded ({EXPANSION_FACTOR} × limits.config_bytes; a value counts \
                 {VALUE_COST} bytes, a string {VALUE_COST} plus its length)",
                self.expansion_limit
            ),
            format!("{}; {}", alias_hint(), how_to_raise("config_bytes")),
        ))
    }
}

/// Visits one value and everything inside it, counting; builds nothing.
#[derive(Clone, Copy)]
struct Count<'b, 'l> {
    budget: &'b Budget<'l>,
    depth: u64,
}

impl Count<'_, '_> {
    /// The visitor for the items of a list or mapping, one level deeper.
    fn enter<E: de::Error>(self) -> Result<Self, E> {
        let limit = self.budget.limits.nesting_depth;
        if self.depth + 1 > limit {
            return Err(self.budget.exceed(
                format!("values are nested more than {limit} levels deep (limits.nesting_depth)"),
                format!("flatten the structure; {}", how_to_raise("nesting_depth")),
            ));
        }
        self.budget.spend(0)?;
        Ok(Count {
            depth: self.depth + 1,
            ..self
        })
    }

    fn too_many<E: de::Error>(self, what: &str, count: &str) -> E {
        let limit = self.budget.limits.list_items;
        self.budget.exceed(
            format!("a {what} of {count}, more than the limit of {limit} (limits.list_items)"),
            format!(
                "a list this long is usually generated: a sweep over fewer values, or \
                 values the job computes from a few parameters; {}",
                how_to_raise("list_items")
            ),
        )
    }
}

impl<'de> DeserializeSeed<'de> for Count<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.budget.spend(0)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.budget.spend(0)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.budget.spend(0)
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.budget.spend(0)
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.budget.spend(0)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.budget.spend(0)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.budget.spend(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.budget.spend(0)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        let limit = self.budget.limits.string_bytes;
        if value.len() as u64 > limit {
            return Err(self.budget.exceed(
                format!(
                    "a string of {} bytes, more than the limit of {limit} (limits.string_bytes)",
                    value.len()
                ),
                format!(
                    "put long text in a file the job reads; {}",
                    how_to_raise("string_bytes")
                ),
            ));
        }
        self.budget.spend(value.len())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, inner: D) -> Result<(), D::Error> {
        inner.deserialize_any(self)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, inner: D) -> Result<(), D::Error> {
        inner.deserialize_any(self)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let item = self.enter()?;
        let mut count = 0u64;
        while seq.next_element_seed(item)?.is_some() {
            count += 1;
            if count > self.budget.limits.list_items {
                // The rest is counted without following aliases, for the message.
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    count += 1;
                }
                return Err(self.too_many("list", &format!("{count} items")));
            }
        }
        Ok(())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let item = self.enter()?;
        let mut count = 0u64;
        while map.next_key_seed(item)?.is_some() {
            map.next_value_seed(item)?;
            count += 1;
            if count > self.budget.limits.list_items {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    count += 1;
                }
                return Err(self.too_many("mapping", &format!("{count} entries")));
            }
        }
        Ok(())
    }

    /// A tagged value (`!name value`): the tag, then the value.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use de::VariantAccess;
        let (_, value) = data.variant_seed(self)?;
        value.newtype_variant_seed(self)
    }
}
