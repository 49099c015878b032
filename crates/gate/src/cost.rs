//! What a request cost: a built-in price table (USD per million tokens, the vendors' list
//! prices for the models people route through gateways like this one), overridable per model
//! with `[prices."model"]`. Subscription traffic is priced the same way: what it would have cost
//! on the API, i.e. what the subscription saved.

use codex_gate_protocol::usage::Usage;
use std::collections::HashMap;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    /// Input tokens read from the provider's prompt cache.
    pub cached_input: f64,
    pub output: f64,
}

const fn p(input: f64, cached_input: f64, output: f64) -> Price {
    Price { input, cached_input, output }
}

/// (model, price). A name matches exactly, or as a prefix followed by `-` (`gpt-4.1-2025-04-14`).
const BUILT_IN: &[(&str, Price)] = &[
    ("gpt-5", p(1.25, 0.125, 10.0)),
    ("gpt-5-mini", p(0.25, 0.025, 2.0)),
    ("gpt-5-nano", p(0.05, 0.005, 0.4)),
    ("gpt-5-codex", p(1.25, 0.125, 10.0)),
    ("gpt-5-pro", p(15.0, 15.0, 120.0)),
    ("gpt-5.1", p(1.25, 0.125, 10.0)),
    ("gpt-5.1-codex", p(1.25, 0.125, 10.0)),
    ("gpt-5.1-codex-max", p(1.25, 0.125, 10.0)),
    ("gpt-5.1-codex-mini", p(0.25, 0.025, 2.0)),
    ("gpt-5.2", p(1.75, 0.175, 14.0)),
    ("gpt-5.2-codex", p(1.75, 0.175, 14.0)),
    ("gpt-4.1", p(2.0, 0.5, 8.0)),
    ("gpt-4.1-mini", p(0.4, 0.1, 1.6)),
    ("gpt-4.1-nano", p(0.1, 0.025, 0.4)),
    ("gpt-4o", p(2.5, 1.25, 10.0)),
    ("gpt-4o-mini", p(0.15, 0.075, 0.6)),
    ("o3", p(2.0, 0.5, 8.0)),
    ("o4-mini", p(1.1, 0.275, 4.4)),
    ("codex-mini-latest", p(1.5, 0.375, 6.0)),
    ("deepseek-chat", p(0.28, 0.028, 0.42)),
    ("deepseek-reasoner", p(0.28, 0.028, 0.42)),
    ("qwen3-coder-plus", p(1.0, 0.1, 5.0)),
    ("qwen3-coder-flash", p(0.3, 0.03, 1.5)),
    ("qwen-max", p(1.6, 1.6, 6.4)),
    ("qwen-plus", p(0.4, 0.4, 1.2)),
    ("kimi-k2", p(0.6, 0.15, 2.5)),
    ("kimi-k2-thinking", p(0.6, 0.15, 2.5)),
    ("glm-4.6", p(0.6, 0.11, 2.2)),
    ("glm-4.5", p(0.6, 0.11, 2.2)),
    ("glm-4.5-air", p(0.2, 0.03, 1.1)),
];

/// The newest GPT-5 point release in the table: later `gpt-5.N` models (and their variants)
/// are priced as it until the table or `[prices]` knows them.
const NEWEST_GPT5: &str = "gpt-5.2";

/// The price table in force: config overrides over the built-in list.
#[derive(Debug, Default)]
pub struct Prices {
    overrides: HashMap<String, Price>,
    /// Lookups by upstream model name, remembered (every request prices its model).
    seen: parking_lot::RwLock<HashMap<String, Option<Price>>>,
}

impl Clone for Prices {
    fn clone(&self) -> Prices {
        Prices::new(self.overrides.clone())
    }
}

/// Model names remembered at most (clients name models; the table stays bounded).
const MAX_SEEN: usize = 1024;

impl Prices {
    pub fn new(overrides: HashMap<String, Price>) -> Prices {
        Prices {
            overrides: overrides.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect(),
            seen: Default::default(),
        }
    }

    /// [`Prices::lookup`], remembered per model name.
    fn cached(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.seen.read().get(model) {
            return *p;
        }
        let p = self.lookup(model);
        let mut seen = self.seen.write();
        if seen.len() < MAX_SEEN {
            seen.insert(model.to_owned(), p);
        }
        p
    }

    /// The price of `model` (an upstream model name, `vendor/model` refs included).
    pub fn lookup(&self, model: &str) -> Option<Price> {
        let m = model.trim().to_ascii_lowercase();
        if let Some(p) = self.overrides.get(&m) {
            return Some(*p);
        }
        // OpenRouter-style `vendor/model`: the model part.
        let bare = m.rsplit('/').next().unwrap_or(&m);
        let bare = bare.split(':').next().unwrap_or(bare);
        if let Some(p) = self.overrides.get(bare) {
            return Some(*p);
        }
        let table = |name: &str| {
            BUILT_IN
                .iter()
                .filter(|(k, _)| name == *k || (name.starts_with(k) && name.as_bytes().get(k.len()) == Some(&b'-')))
                .max_by_key(|(k, _)| k.len())
                .map(|(_, p)| *p)
        };
        table(bare).or_else(|| {
            let rest = bare.strip_prefix("gpt-5.")?;
            let minor: u32 = rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
            (minor > 2).then(|| table(NEWEST_GPT5)).flatten()
        })
    }

    /// USD for `usage` on `model`; 0 when the model has no known price.
    pub fn cost(&self, model: &str, usage: &Usage) -> f64 {
        self.cached(model).map_or(0.0, |p| cost(&p, usage))
    }
}

/// USD for `usage` at `p`. Cached input is part of the input count and billed at its own rate;
/// reasoning is part of output.
pub fn cost(p: &Price, u: &Usage) -> f64 {
    let cached = u.cached_input_tokens.min(u.input_tokens) as f64;
    let fresh = u.input_tokens as f64 - cached;
    (fresh * p.input + cached * p.cached_input + u.output_tokens as f64 * p.output) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, cached: u64, output: u64) -> Usage {
        Usage { input_tokens: input, cached_input_tokens: cached, output_tokens: output, ..Default::default() }
    }

    #[test]
    fn price_table() {
        let prices = Prices::new(HashMap::from([
            ("my-local".to_owned(), p(0.0, 0.0, 0.0)),
            ("GPT-5".to_owned(), p(2.0, 1.0, 4.0)),
        ]));
        let cases: &[(&str, (u64, u64, u64), f64)] = &[
            // 1M fresh input + 1M output on gpt-5-mini: 0.25 + 2.
            ("gpt-5-mini", (1_000_000, 0, 1_000_000), 2.25),
            // Cached input at a tenth: 900k cached + 100k fresh.
            ("gpt-5.1-codex", (1_000_000, 900_000, 0), 0.1 * 1.25 + 0.9 * 0.125),
            // The override (case-insensitive) wins over the table.
            ("gpt-5", (1_000_000, 0, 1_000_000), 6.0),
            // A dated snapshot is priced as its model.
            ("gpt-4.1-2025-04-14", (1_000_000, 0, 0), 2.0),
            ("gpt-4.1-mini-2025-04-14", (1_000_000, 0, 0), 0.4),
            // OpenRouter refs and tags.
            ("deepseek/deepseek-chat", (1_000_000, 0, 1_000_000), 0.70),
            ("moonshotai/kimi-k2:free", (0, 0, 1_000_000), 2.5),
            ("z-ai/glm-4.6", (1_000_000, 100_000, 0), 0.9 * 0.6 + 0.1 * 0.11),
            // Newer point releases take the newest known GPT-5 price.
            ("gpt-5.5", (1_000_000, 0, 0), 1.75),
            ("gpt-5.4-codex", (0, 0, 1_000_000), 14.0),
            ("my-local", (5_000_000, 0, 5_000_000), 0.0),
            // Unknown: no price, no cost.
            ("llama-3-70b", (1_000_000, 0, 1_000_000), 0.0),
            // More cached than input (a broken upstream) never goes negative.
            ("gpt-4o", (100, 1_000, 0), 100.0 * 1.25 / 1e6),
        ];
        for (model, (i, c, o), want) in cases {
            let got = prices.cost(model, &usage(*i, *c, *o));
            assert!((got - want).abs() < 1e-9, "{model}: {got} != {want}");
        }
        assert!(prices.lookup("gpt-5.").is_none());
        assert!(prices.lookup("o3-2025-04-16").is_some_and(|p| p.input == 2.0), "a dated snapshot");
        assert!(prices.lookup("o30").is_none(), "no prefix without '-'");
    }
}
