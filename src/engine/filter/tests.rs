use super::*;

fn filter(rules: &[Rule]) -> Filter {
    Filter::new(rules, false).expect("valid rules")
}

fn exclude(pattern: &str) -> Rule {
    Rule::Exclude(pattern.to_string())
}

fn include(pattern: &str) -> Rule {
    Rule::Include(pattern.to_string())
}

fn taken(filter: &Filter, path: &str) -> bool {
    filter.verdict_with_parents(path.as_bytes(), false) == Verdict::Include
}

fn dir_taken(filter: &Filter, path: &str) -> bool {
    filter.verdict_with_parents(path.as_bytes(), true) == Verdict::Include
}

#[test]
fn no_rules_take_everything() {
    let none = filter(&[]);
    assert!(taken(&none, "a/b/c.log"));
    assert!(taken(&Filter::take_all(), "a/b/c.log"));
    assert!(dir_taken(&none, ""));
}

#[test]
fn a_pattern_without_a_slash_matches_a_name_at_any_depth() {
    let f = filter(&[exclude("*.log")]);
    assert!(!taken(&f, "a.log"));
    assert!(!taken(&f, "x/y/a.log"));
    assert!(taken(&f, "a.log.txt"));
    assert!(taken(&f, "x/a.txt"));
}

#[test]
fn a_leading_or_inner_slash_anchors_at_the_top() {
    let f = filter(&[exclude("/build"), exclude("doc/*.md")]);
    assert!(!taken(&f, "build"));
    assert!(taken(&f, "src/build"));
    assert!(!taken(&f, "doc/a.md"));
    assert!(
        taken(&f, "x/doc/a.md"),
        "unlike rsync, an inner slash anchors"
    );
    assert!(taken(&f, "doc/sub/a.md"), "* does not cross a slash");
    let deep = filter(&[exclude("doc/**/*.md"), exclude("**/tmp")]);
    assert!(!taken(&deep, "doc/sub/deeper/a.md"));
    assert!(!taken(&deep, "doc/a.md"));
    assert!(!taken(&deep, "x/y/tmp"));
}

#[test]
fn a_trailing_slash_matches_directories_and_what_is_beneath_them() {
    let f = filter(&[exclude("build/")]);
    assert!(!dir_taken(&f, "build"));
    assert!(!dir_taken(&f, "src/build"));
    assert!(taken(&f, "build"), "a file named build is not a directory");
    assert!(!taken(&f, "build/x.o"));
    assert!(!taken(&f, "src/build/deep/x.o"));
    // The walk's own question: the entry alone, its parents already taken.
    assert_eq!(f.verdict(b"build/x.o", false), Verdict::Include);
}

#[test]
fn the_first_matching_rule_wins() {
    let keep_first = filter(&[include("keep.log"), exclude("*.log")]);
    assert!(taken(&keep_first, "keep.log"));
    assert!(taken(&keep_first, "a/keep.log"));
    assert!(!taken(&keep_first, "other.log"));

    let exclude_first = filter(&[exclude("*.log"), include("keep.log")]);
    assert!(!taken(&exclude_first, "keep.log"));
}

#[test]
fn an_include_beneath_an_excluded_directory_takes_nothing() {
    // rsync's rule: the walk never enters build/.
    let f = filter(&[include("build/keep"), exclude("build/")]);
    assert!(!taken(&f, "build/keep"));
    // Letting the directory in, and only the one file beneath it.
    let f = filter(&[include("build/"), include("build/keep"), exclude("build/*")]);
    assert!(dir_taken(&f, "build"));
    assert!(taken(&f, "build/keep"));
    assert!(!taken(&f, "build/other"));
}

#[test]
fn a_negated_pattern_turns_the_rule_round() {
    let f = filter(&[exclude("!keep.log"), exclude("*.log")]);
    assert!(taken(&f, "keep.log"));
    assert!(!taken(&f, "drop.log"));
    let f = filter(&[include("!*.tmp")]);
    assert!(!taken(&f, "a.tmp"));
    assert!(taken(&f, "a.txt"));
}

#[test]
fn a_pattern_starting_with_a_hash_is_a_name_not_a_comment() {
    let f = filter(&[exclude("#notes#")]);
    assert!(!taken(&f, "#notes#"));
    assert!(taken(&f, "notes"));
}

#[test]
fn an_empty_or_broken_pattern_is_refused_with_its_text() {
    let err = Filter::new(&[exclude("  ")], false).unwrap_err();
    assert!(err.to_string().contains("it is empty"), "{err}");
    let err = Filter::new(&[include("a{b")], false).unwrap_err();
    assert_eq!(err.pattern, "a{b");
    assert!(err.to_string().contains("gitignore-style"), "{err}");
}

#[test]
fn an_exclude_from_file_reads_as_rsync_reads_it() {
    let text = "# comment\n; comment too\n\n*.o\n+ keep.o\n- *.a\r\n!important.o\n";
    assert_eq!(
        Rule::parse_file(text),
        [
            exclude("*.o"),
            include("keep.o"),
            exclude("*.a"),
            exclude("!important.o"),
        ]
    );
}

#[test]
fn gitignore_files_apply_beneath_their_directory_with_git_order() {
    let mut f = Filter::new(&[], true).unwrap();
    assert!(f.honours_gitignore());
    assert!(f
        .add_gitignore(b"", b"*.log\n!keep.log\n/top-only\n")
        .is_empty());
    assert!(f.add_gitignore(b"sub", b"/anchored\n!x.log\n").is_empty());

    assert!(!taken(&f, "a.log"));
    assert!(taken(&f, "keep.log"), "a later ! line re-includes");
    assert!(!taken(&f, "top-only"));
    assert!(taken(&f, "sub/top-only"));
    assert!(!taken(&f, "sub/anchored"), "anchored at its own directory");
    assert!(taken(&f, "anchored"));
    assert!(taken(&f, "sub/deeper/anchored"));
    assert!(taken(&f, "sub/x.log"), "the deeper file decides first");
    assert!(!taken(&f, "sub/y.log"), "the parent's rule still applies");
    assert!(!taken(&f, "subway/y.log"));
}

#[test]
fn command_line_rules_come_before_gitignore_files() {
    let mut f = Filter::new(&[include("wanted.log")], true).unwrap();
    f.add_gitignore(b"", b"*.log\n");
    assert!(taken(&f, "wanted.log"));
    assert!(!taken(&f, "other.log"));
}

#[test]
fn gitignore_files_are_ignored_unless_honoured() {
    let mut f = Filter::new(&[], false).unwrap();
    assert!(!f.honours_gitignore());
    f.add_gitignore(b"", b"*\n");
    assert!(taken(&f, "anything"));
}

#[test]
fn a_bad_gitignore_line_is_reported_and_the_rest_still_apply() {
    let mut f = Filter::new(&[], true).unwrap();
    let problems = f.add_gitignore(b"sub", b"a{b\n*.o\n");
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].to_string().contains("\"sub\"/.gitignore"),
        "{}",
        problems[0]
    );
    assert!(!taken(&f, "sub/x.o"));
}

#[test]
fn names_that_are_not_utf8_are_matched_by_their_bytes() {
    let f = filter(&[exclude("*.bin")]);
    assert_eq!(
        f.verdict_with_parents(b"\xff\xfe.bin", false),
        Verdict::Exclude
    );
    assert_eq!(
        f.verdict_with_parents(b"\xff/a.txt", false),
        Verdict::Include
    );
}
