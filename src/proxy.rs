//! The request path inside one connection, in the order it runs: the [`router`] picks the
//! route in the current [`generation`], whose stack was assembled by [`stack`] when the config
//! loaded; every error the stack returns is answered by [`rescue`].

pub(crate) mod generation;
pub(crate) mod rescue;
pub(crate) mod router;
pub(crate) mod stack;
