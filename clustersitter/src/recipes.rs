//! Finding the recipe a job's `deployment_recipe` names, reading it, and
//! the snapshot of it a job record keeps.
//!
//! A name is looked up as follows:
//! - a name containing `/` is a path: absolute as it is, or relative to
//!   each of the cluster's `recipe_dirs` in order;
//! - otherwise it is dotted, as the seed's job files write it:
//!   `mystartup.recipes.deploy` is `mystartup/recipes/deploy.toml` in the
//!   first of the `recipe_dirs` that has it, then among the recipes shipped
//!   with Cerebro (embedded from the repository's `recipes/`:
//!   `release-tarball`, `install-script`; their source reads
//!   `builtin:NAME`).
//!
//! The snapshot ([`ResolvedRecipe`]) is what instances deploy: a recipe
//! file changed on disk reaches them only when the job is submitted or
//! updated again, as a rolling update.

use cerebro_types::deploy::{Recipe, RecipeError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The recipes shipped with Cerebro, by name: the files of `recipes/`.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "release-tarball",
        include_str!("../../recipes/release-tarball.toml"),
    ),
    (
        "install-script",
        include_str!("../../recipes/install-script.toml"),
    ),
];

/// The prefix of a shipped recipe's source.
pub const BUILTIN_SOURCE_PREFIX: &str = "builtin:";

/// A recipe as found and read when a job was submitted or updated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedRecipe {
    /// The job's `deployment_recipe` as written.
    pub name: String,
    /// The file it was read from (absolute), or `builtin:NAME`.
    pub source: String,
    /// SHA-256 of the file's bytes, hex: a change of it rolls out.
    pub sha256: String,
    pub recipe: Recipe,
}

/// Why a `deployment_recipe` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No file by that name in any directory searched, nor a shipped
    /// recipe of that name.
    #[error(
        "no recipe '{name}': looked for {} and among the recipes shipped with Cerebro ({})",
        looked_in(.searched),
        BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    )]
    NotFound {
        name: String,
        searched: Vec<PathBuf>,
    },
    /// A dotted name with an empty or unusable component.
    #[error("'{name}' is not a recipe name: {why}")]
    BadName { name: String, why: String },
    /// The file exists but cannot be read.
    #[error("cannot read recipe {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file was read but is not a usable recipe (each problem as
    /// `FILE:LINE:COLUMN: message`).
    #[error("{0}")]
    Parse(#[from] RecipeError),
}

fn looked_in(searched: &[PathBuf]) -> String {
    if searched.is_empty() {
        return "no file (no recipe_dirs configured)".into();
    }
    let paths: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
    paths.join(", ")
}

/// The relative file a dotted name stands for (`a.b.c` → `a/b/c.toml`).
fn dotted_path(name: &str) -> Result<PathBuf, ResolveError> {
    let bad = |why: &str| ResolveError::BadName {
        name: name.to_string(),
        why: why.to_string(),
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut path = PathBuf::new();
    for part in name.split('.') {
        if part.is_empty() {
            return Err(bad("a dotted name has no empty parts ('a.b.c')"));
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                "each part of a dotted name is letters, digits, '-' and '_' (a path needs a '/')",
            ));
        }
        path.push(part);
    }
    path.set_extension("toml");
    Ok(path)
}

/// Reads and parses the recipe at `path`.
fn read(name: &str, path: &Path) -> Result<ResolvedRecipe, ResolveError> {
    let bytes = std::fs::read(path).map_err(|source| ResolveError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let shown = path.display().to_string();
    let text = String::from_utf8(bytes.clone()).map_err(|_| {
        ResolveError::Parse(RecipeError {
            problems: vec![cerebro_types::error::LocatedProblem {
                path: shown.clone(),
                line_column: None,
                message: "a recipe is UTF-8 text".into(),
            }],
        })
    })?;
    Ok(ResolvedRecipe {
        name: name.to_string(),
        recipe: Recipe::parse(&text, &shown)?,
        source: shown,
        sha256: hex_sha256(&bytes),
    })
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The recipe `name` stands for, looked up in `dirs` (in order) and then
/// among the shipped ones, as the module's doc says.
///
/// # Errors
/// [`ResolveError::NotFound`] naming every path tried and the shipped
/// names; [`ResolveError::BadName`] for a dotted name that cannot be a
/// file; [`ResolveError::Read`] and [`ResolveError::Parse`] for the file
/// found (a parse error is located: `FILE:LINE:COLUMN`).
pub fn resolve(name: &str, dirs: &[PathBuf]) -> Result<ResolvedRecipe, ResolveError> {
    let mut searched = Vec::new();
    if name.contains('/') {
        let path = Path::new(name);
        let candidates: Vec<PathBuf> = if path.is_absolute() {
            vec![path.to_path_buf()]
        } else {
            dirs.iter().map(|dir| dir.join(path)).collect()
        };
        for candidate in candidates {
            if candidate.is_file() {
                return read(name, &candidate);
            }
            searched.push(candidate);
        }
        return Err(ResolveError::NotFound {
            name: name.to_string(),
            searched,
        });
    }
    let relative = dotted_path(name)?;
    for dir in dirs {
        let candidate = dir.join(&relative);
        if candidate.is_file() {
            return read(name, &candidate);
        }
        searched.push(candidate);
    }
    if let Some((builtin, text)) = BUILTIN.iter().find(|(n, _)| *n == name) {
        let source = format!("{BUILTIN_SOURCE_PREFIX}{builtin}");
        return Ok(ResolvedRecipe {
            name: name.to_string(),
            recipe: Recipe::parse(text, &source)?,
            sha256: hex_sha256(text.as_bytes()),
            source,
        });
    }
    Err(ResolveError::NotFound {
        name: name.to_string(),
        searched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "[[steps]]\nkind = \"run\"\ncommand = \"true\"\n";

    fn dirs() -> (tempfile::TempDir, Vec<PathBuf>) {
        let root = tempfile::tempdir().unwrap();
        let first = root.path().join("first");
        let second = root.path().join("second");
        std::fs::create_dir_all(first.join("mystartup/recipes")).unwrap();
        std::fs::create_dir_all(second.join("mystartup/recipes")).unwrap();
        (root, vec![first, second])
    }

    #[test]
    fn a_dotted_name_is_a_file_in_the_first_dir_that_has_it() {
        let (_root, dirs) = dirs();
        let second = dirs[1].join("mystartup/recipes/deploy.toml");
        std::fs::write(&second, RUN).unwrap();
        let found = resolve("mystartup.recipes.deploy", &dirs).unwrap();
        assert_eq!(found.source, second.display().to_string());
        assert_eq!(found.name, "mystartup.recipes.deploy");
        assert_eq!(found.sha256, hex_sha256(RUN.as_bytes()));
        assert_eq!(found.recipe.steps.len(), 1);
        let first = dirs[0].join("mystartup/recipes/deploy.toml");
        std::fs::write(&first, format!("description = \"first\"\n{RUN}")).unwrap();
        let found = resolve("mystartup.recipes.deploy", &dirs).unwrap();
        assert_eq!(found.source, first.display().to_string());
        assert_eq!(found.recipe.description.as_deref(), Some("first"));
    }

    #[test]
    fn a_name_with_a_slash_is_a_path() {
        let (root, dirs) = dirs();
        let file = dirs[1].join("mystartup/recipes/deploy.toml");
        std::fs::write(&file, RUN).unwrap();
        let found = resolve("mystartup/recipes/deploy.toml", &dirs).unwrap();
        assert_eq!(found.source, file.display().to_string());
        let absolute = root.path().join("elsewhere.toml");
        std::fs::write(&absolute, RUN).unwrap();
        let found = resolve(absolute.to_str().unwrap(), &[]).unwrap();
        assert_eq!(found.source, absolute.display().to_string());
        let error = resolve("mystartup/nope.toml", &dirs)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&dirs[0].join("mystartup/nope.toml").display().to_string())
                && error.contains(&dirs[1].join("mystartup/nope.toml").display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_name_names_every_directory_searched_and_the_shipped_recipes() {
        let (_root, dirs) = dirs();
        let error = resolve("mystartup.recipes.nope", &dirs)
            .unwrap_err()
            .to_string();
        for dir in &dirs {
            let tried = dir.join("mystartup/recipes/nope.toml");
            assert!(error.contains(&tried.display().to_string()), "{error}");
        }
        assert!(
            error.contains("shipped with Cerebro (release-tarball, install-script)"),
            "{error}"
        );
        let error = resolve("nope", &[]).unwrap_err().to_string();
        assert!(error.contains("no recipe_dirs configured"), "{error}");
        let error = resolve("a..b", &dirs).unwrap_err().to_string();
        assert!(error.contains("no empty parts"), "{error}");
    }

    #[test]
    fn the_shipped_recipes_resolve_unless_a_dir_overrides_them() {
        for (name, text) in BUILTIN {
            let found = resolve(name, &[]).unwrap();
            assert_eq!(found.source, format!("builtin:{name}"));
            assert_eq!(found.sha256, hex_sha256(text.as_bytes()));
        }
        let (_root, dirs) = dirs();
        let own = dirs[0].join("release-tarball.toml");
        std::fs::write(&own, RUN).unwrap();
        let found = resolve("release-tarball", &dirs).unwrap();
        assert_eq!(found.source, own.display().to_string());
    }

    #[test]
    fn a_recipe_that_does_not_parse_is_located_in_its_file() {
        let (_root, dirs) = dirs();
        let file = dirs[0].join("bad.toml");
        std::fs::write(&file, "[[steps]]\nkind = \"run\"\ncomand = \"x\"\n").unwrap();
        let error = resolve("bad", &dirs).unwrap_err();
        assert!(matches!(error, ResolveError::Parse(_)));
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("{}:3:1: unknown field `comand`", file.display())),
            "{text}"
        );
    }
}
