//! Arguments of statements built at run time, numbered `$1, $2, …` in the order they are added (both engines read
//! `$N`): the anomaly log's filters and a stream checkpoint's segment rows.

use std::borrow::Cow;

use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::QueryAs;

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub(crate) enum Arg<'a> {
    Int(i64),
    Real(f64),
    Text(Cow<'a, str>),
    OptText(Option<&'a str>),
    Bytes(&'a [u8]),
}

/// The arguments of one statement, in placeholder order.
#[derive(Debug, Default)]
pub(crate) struct Args<'a>(Vec<Arg<'a>>);

impl<'a> Args<'a> {
    /// The next placeholder, `$N`, for `arg`.
    pub(crate) fn placeholder(&mut self, arg: Arg<'a>) -> String {
        self.0.push(arg);
        format!("${}", self.0.len())
    }

    /// `q` with every argument bound, in order (as owned values, so the query does not borrow them).
    pub(crate) fn bind<'q, O>(
        &self,
        mut q: QueryAs<'q, Any, O, AnyArguments<'q>>,
    ) -> QueryAs<'q, Any, O, AnyArguments<'q>> {
        for a in &self.0 {
            q = match a {
                Arg::Int(v) => q.bind(*v),
                Arg::Real(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.to_string()),
                Arg::OptText(v) => q.bind(v.map(str::to_owned)),
                Arg::Bytes(v) => q.bind(v.to_vec()),
            };
        }
        q
    }
}
