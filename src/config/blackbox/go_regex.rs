//! Go's meaning for `\d`, `\w`, `\s` and `\b` in an `expect`: RE2 (Go's
//! `regexp`) makes them ASCII-only, where the regex crate makes them
//! Unicode. `\d` would match `٣` here and not in blackbox_exporter.

#![forbid(unsafe_code)]

use regex_syntax::ast::{
    self, AssertionKind, Ast, ClassBracketed, ClassPerlKind, ClassSet, ClassSetItem,
};

/// `pattern` with each `\d`, `\w`, `\s` (and negations) written as Go's
/// ASCII class, and each `\b`, `\B` as `(?-u:\b)`, `(?-u:\B)`; `None`
/// when it has none of them or does not parse (compiling it as written
/// then reports the error in the user's words).
pub(super) fn ascii_perl_classes(pattern: &str) -> Option<String> {
    let mut ast = ast::parse::Parser::new().parse(pattern).ok()?;
    if !rewrite(&mut ast) {
        return None;
    }
    let mut text = String::new();
    ast::print::Printer::new()
        .print(&ast, &mut text)
        .expect("printing to a String cannot fail");
    Some(text)
}

/// Go's class for a perl class (`regexp/syntax/perl_groups.go`): `\s` is
/// `[\t\n\f\r ]`, without the `\v` that the regex crate's ASCII `\s` has.
fn go_class(kind: &ClassPerlKind, negated: bool) -> ClassBracketed {
    let class = match kind {
        ClassPerlKind::Digit => "[0-9]",
        ClassPerlKind::Word => "[0-9A-Za-z_]",
        ClassPerlKind::Space => r"[\t\n\f\r ]",
    };
    let parsed = ast::parse::Parser::new().parse(class);
    let Ok(Ast::ClassBracketed(class)) = &parsed else {
        unreachable!("{class} is a bracketed class")
    };
    let mut class = ClassBracketed::clone(class);
    class.negated = negated;
    class
}

/// Rewrites in place; whether anything changed. The depth is bounded by
/// the parser's nesting limit.
fn rewrite(ast: &mut Ast) -> bool {
    match ast {
        Ast::ClassPerl(perl) => {
            *ast = Ast::class_bracketed(go_class(&perl.kind, perl.negated));
            true
        }
        Ast::Assertion(assertion)
            if matches!(
                assertion.kind,
                AssertionKind::WordBoundary | AssertionKind::NotWordBoundary
            ) =>
        {
            let ascii = match assertion.kind {
                AssertionKind::WordBoundary => r"(?-u:\b)",
                _ => r"(?-u:\B)",
            };
            *ast = ast::parse::Parser::new()
                .parse(ascii)
                .expect("an ASCII word boundary parses");
            true
        }
        Ast::ClassBracketed(class) => rewrite_set(&mut class.kind),
        Ast::Repetition(repetition) => rewrite(&mut repetition.ast),
        Ast::Group(group) => rewrite(&mut group.ast),
        Ast::Alternation(alternation) => alternation
            .asts
            .iter_mut()
            .fold(false, |changed, ast| rewrite(ast) | changed),
        Ast::Concat(concat) => concat
            .asts
            .iter_mut()
            .fold(false, |changed, ast| rewrite(ast) | changed),
        _ => false,
    }
}

fn rewrite_set(set: &mut ClassSet) -> bool {
    match set {
        ClassSet::Item(item) => rewrite_item(item),
        ClassSet::BinaryOp(op) => rewrite_set(&mut op.lhs) | rewrite_set(&mut op.rhs),
    }
}

fn rewrite_item(item: &mut ClassSetItem) -> bool {
    match item {
        ClassSetItem::Perl(perl) => {
            *item = ClassSetItem::Bracketed(Box::new(go_class(&perl.kind, perl.negated)));
            true
        }
        ClassSetItem::Bracketed(class) => rewrite_set(&mut class.kind),
        ClassSetItem::Union(union) => union
            .items
            .iter_mut()
            .fold(false, |changed, item| rewrite_item(item) | changed),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::ascii_perl_classes;

    #[test]
    fn perl_classes_and_word_boundaries_become_go_ascii() {
        assert_eq!(ascii_perl_classes("^220 ([^ ]+)"), None);
        assert_eq!(ascii_perl_classes("("), None);
        assert_eq!(
            ascii_perl_classes(r"^\d+\D\w\W\s\S\bx\B").as_deref(),
            Some(r"^[0-9]+[^0-9][0-9A-Za-z_][^0-9A-Za-z_][\t\n\f\r ][^\t\n\f\r ](?-u:\b)x(?-u:\B)")
        );
        assert_eq!(
            ascii_perl_classes(r"(?i)a|[\d_[\s]&&[^\W]]{2}").as_deref(),
            Some(r"(?i)a|[[0-9]_[[\t\n\f\r ]]&&[^[^0-9A-Za-z_]]]{2}")
        );
    }
}
