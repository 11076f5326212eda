//! The build recipe: a build's settings as TOML, one section per step (`[pairing]`,
//! `[generation]`, `[balance]`, `[dataset]`, ...), the way training recipes work.
//! `realsyn build all --recipe FILE --set balance.caps=[20,35]` reads one; the flags
//! of `build all` make the same `Manifest`, and `--set` applies to either. Keys a
//! recipe leaves out take their defaults; an optional section left out turns its
//! paper step off (and `build all` lists it under "paper steps not run"). Unknown
//! keys are refused. The resolved recipe is written into the store as `recipe.toml`:
//! `realsyn build all --recipe STORE/recipe.toml --store STORE` resumes it.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::embed::EncoderChoice;
use crate::store::manifest::{CaptionerChoice, LlmChoice, Manifest};
use crate::write::Variant;

/// The resolved recipe's file in a store.
pub const RECIPE_FILE: &str = "recipe.toml";

impl Manifest {
    /// Read a build recipe and apply `KEY=VALUE` overrides.
    pub fn from_recipe(path: &Path, overrides: &[String]) -> Result<Self> {
        let table = realsyn_io::recipe::load_with_overrides(path, overrides)?;
        Self::from_table(table, &format!("build recipe {}", path.display()))
    }

    /// These settings with `KEY=VALUE` overrides applied (dotted keys, TOML values).
    pub fn with_overrides(self, overrides: &[String]) -> Result<Self> {
        if overrides.is_empty() {
            return Ok(self);
        }
        let mut table = toml::Table::try_from(&self)?;
        for o in overrides {
            realsyn_io::recipe::apply_override(&mut table, o)?;
        }
        Self::from_table(table, "--set")
    }

    fn from_table(given: toml::Table, what: &str) -> Result<Self> {
        let m: Manifest = given
            .clone()
            .try_into()
            .with_context(|| format!("{what}: not a build recipe"))?;
        let taken = toml::Table::try_from(&m)?;
        realsyn_io::recipe::refuse_unknown_keys(&given, &taken, what)?;
        Ok(m)
    }

    /// The recipe as TOML (what `recipe.toml` holds).
    pub fn to_recipe_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Fill what follows from other settings: the dataset variants (every balance
    /// cap, else `all`), absolute input folders (a store is pinned to them).
    pub fn resolve(&mut self) {
        if let Some(d) = &mut self.dataset
            && d.variants.is_empty()
        {
            d.variants = match &self.balance {
                Some(b) => b
                    .caps
                    .iter()
                    .map(|&cap| Variant::Balanced { cap })
                    .collect(),
                None => vec![Variant::All],
            };
        }
        for p in &mut self.inputs {
            if let Ok(abs) = std::fs::canonicalize(&*p) {
                *p = abs;
            }
        }
    }

    /// Refuse settings no build can run, with the key to fix.
    pub fn validate(&self) -> Result<()> {
        if self.inputs.is_empty() {
            bail!("no inputs: give --input (recipe: inputs = [\"DIR\", ...])");
        }
        if self.parts == 0 || self.images_per_tar == 0 {
            bail!("parts and images_per_tar must be at least 1");
        }
        if self.semantic.as_ref().map(|s| &s.encoder) == Some(&EncoderChoice::BagOfWords) {
            bail!(
                "--image-encoder bag-of-words: bag-of-words embeds sentences; use color-histogram or CLIP weights"
            );
        }
        if self.text_semantic.as_ref().map(|s| &s.encoder) == Some(&EncoderChoice::ColorHistogram) {
            bail!(
                "--text-encoder color-histogram: color-histogram embeds images; use bag-of-words or CLIP weights"
            );
        }
        for (what, n) in [
            (
                "--semantic-partitions",
                self.semantic.as_ref().and_then(|s| s.partitions),
            ),
            (
                "--text-semantic-partitions",
                self.text_semantic.as_ref().and_then(|s| s.partitions),
            ),
        ] {
            if n == Some(0) {
                bail!("{what} must be at least 1");
            }
        }
        let paired = self.pairing.is_some();
        if let Some(p) = &self.pairing {
            match &p.encoder {
                EncoderChoice::Weights(w) if w.is_empty() => bail!(
                    "[pairing] needs encoder = \"WEIGHTS\" (--pair-encoder): the dual encoder of \
                     clustering and retrieval"
                ),
                EncoderChoice::Weights(_) => {}
                _ => bail!(
                    "--pair-encoder needs CLIP weights: pairing compares images with sentences, so \
                     one model must embed both"
                ),
            }
            if p.texts_per_image == 0 || p.probe == 0 || p.sentences_per_cluster == 0 {
                bail!("--texts-per-image, --probe and --sentences-per-cluster must be at least 1");
            }
            if p.assign_probe == Some(0) {
                bail!(
                    "--assign-probe must be at least 1 (leave it out to assign among all centroids)"
                );
            }
        }
        if let Some(g) = &self.generation {
            if !paired {
                bail!("--llm merges the texts retrieval finds: it needs --pair-encoder");
            }
            if g.synthetic_per_image == 0 || g.max_tokens == 0 {
                bail!("--synthetic-per-image and --llm-max-tokens must be at least 1");
            }
            if let LlmChoice::Endpoint { base_url, .. } = &g.llm
                && base_url.is_empty()
            {
                bail!(
                    "[generation] needs an llm (--llm): llm.embedded.gguf, llm.endpoint.base_url \
                     or llm.batch.dir"
                );
            }
            if let CaptionerChoice::Git {
                beams, max_tokens, ..
            } = g.captioner
                && (beams == 0 || max_tokens == 0)
            {
                bail!("--caption-beams and --caption-max-tokens must be at least 1");
            }
            crate::generate::prompt::MergePrompt::new(&g.template)?;
        }
        if let Some(b) = &self.balance {
            if !paired {
                bail!("--balance-caps balances image-text pairs: it needs --pair-encoder");
            }
            if b.caps.is_empty() || b.caps.contains(&0) || b.pairs_per_cluster == 0 {
                bail!(
                    "--balance-caps (at least one) and --pairs-per-image-cluster must be at least 1"
                );
            }
        }
        if let Some(d) = &self.dataset {
            if !paired {
                bail!("--dataset writes image-text pairs: it needs --pair-encoder");
            }
            let caps = self.balance.as_ref().map_or(&[][..], |b| &b.caps[..]);
            for v in &d.variants {
                if let Variant::Balanced { cap } | Variant::Random { cap } = *v
                    && !caps.contains(&cap)
                {
                    bail!(
                        "dataset variant {v} needs {cap} among the balance caps ({caps:?}): \
                         --balance-caps, or balance.caps in a recipe"
                    );
                }
            }
            if d.samples_per_shard == 0 || !(1..=100).contains(&d.jpeg_quality) {
                bail!("--samples-per-shard must be at least 1 and --jpeg-quality 1..100");
            }
        }
        Ok(())
    }

    /// Write the resolved recipe into a store (kept if already there: the store's
    /// pin is `manifest.json`, which `pin` checks).
    pub fn write_recipe(&self, store: &Path) -> Result<()> {
        let path = store.join(RECIPE_FILE);
        if path.exists() {
            return Ok(());
        }
        realsyn_io::fs::write_atomic(&path, self.to_recipe_toml()?.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::manifest::{
        BalanceSettings, DatasetSettings, FetchSettings, GenerationSettings, PairingSettings,
        TagSettings,
    };

    fn full() -> Manifest {
        let mut m = Manifest::from_table(
            toml::from_str("inputs = [\"/data/pages\"]\ncat_wordnet = \"/usr/share/wordnet\"\n")
                .unwrap(),
            "test",
        )
        .unwrap();
        m.fetch = Some(FetchSettings::default());
        m.pairing = Some(PairingSettings {
            encoder: EncoderChoice::Weights("/w/clip.safetensors".into()),
            clusters: Some(7),
            ..PairingSettings::default()
        });
        m.generation = Some(GenerationSettings {
            llm: LlmChoice::Endpoint {
                base_url: "http://127.0.0.1:8000/v1".into(),
                model: "llama".into(),
            },
            tags: Some(TagSettings::default()),
            ..GenerationSettings::default()
        });
        m.balance = Some(BalanceSettings {
            caps: vec![20, 35],
            ..BalanceSettings::default()
        });
        m.dataset = Some(DatasetSettings::default());
        m.resolve();
        m
    }

    #[test]
    fn a_recipe_reads_back_as_the_same_settings() {
        let m = full();
        m.validate().unwrap();
        assert_eq!(m.dataset.as_ref().unwrap().variants.len(), 2);
        let text = m.to_recipe_toml().unwrap();
        let back = Manifest::from_table(toml::from_str(&text).unwrap(), "back").unwrap();
        assert_eq!(back, m, "{text}");
    }

    /// Every key of the recipe is some stage's setting (what `build stages` prints).
    #[test]
    fn every_recipe_key_belongs_to_a_stage() {
        let mut m = full();
        m.semantic = Some(crate::store::manifest::SemanticSettings {
            encoder: EncoderChoice::ColorHistogram,
            threshold: 0.9,
            partitions: Some(8),
        });
        let table = toml::Table::try_from(&m).unwrap();
        let owned: Vec<&str> = crate::pipeline::STAGES
            .iter()
            .flat_map(|s| s.settings().iter().copied())
            .collect();
        for key in table.keys() {
            assert!(owned.contains(&key.as_str()), "no stage reads {key}");
        }
    }

    #[test]
    fn left_out_keys_take_defaults_and_left_out_sections_are_off() {
        let m = Manifest::from_table(
            toml::from_str("inputs = [\"d\"]\n[pairing]\nencoder = \"w.safetensors\"\n").unwrap(),
            "test",
        )
        .unwrap();
        let p = m.pairing.as_ref().unwrap();
        assert_eq!((p.texts_per_image, p.probe, p.iterations), (3, 1, 25));
        assert_eq!((m.parts, m.min_entropy), (1, 0.3));
        assert!(m.generation.is_none() && m.balance.is_none() && m.fetch.is_none());
    }

    #[test]
    fn typos_missing_models_and_impossible_settings_are_refused() {
        let typo = Manifest::from_table(
            toml::from_str("inputs = [\"d\"]\n[pairing]\nencoder = \"w\"\ntexts_per_imag = 2\n")
                .unwrap(),
            "r",
        )
        .unwrap_err()
        .to_string();
        assert!(
            typo.contains("pairing.texts_per_imag") && typo.contains("texts_per_image"),
            "{typo}"
        );
        let no_encoder = Manifest::from_table(
            toml::from_str("inputs = [\"d\"]\n[pairing]\nprobe = 2\n").unwrap(),
            "r",
        )
        .unwrap();
        assert!(
            no_encoder
                .validate()
                .unwrap_err()
                .to_string()
                .contains("encoder")
        );
        let m = full().with_overrides(&["balance.caps=[]".into()]).unwrap();
        assert!(m.validate().is_err());
        // The written variants name caps the balance no longer has.
        let m = full().with_overrides(&["balance.caps=[5]".into()]).unwrap();
        let e = m.validate().unwrap_err().to_string();
        assert!(e.contains("balanced-20"), "{e}");
        let m = full()
            .with_overrides(&[
                "pairing.probe=2".into(),
                "balance.band={ kind = \"off\" }".into(),
            ])
            .unwrap();
        assert_eq!(m.pairing.as_ref().unwrap().probe, 2);
        assert_eq!(m.balance.as_ref().unwrap().band, crate::balance::Band::Off);
        assert!(full().with_overrides(&["pairing.nope=1".into()]).is_err());
    }
}
