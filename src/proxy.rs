//! The request path inside one connection, in the order it runs: the [`router`] picks the
//! route in the current [`generation`], whose stack was assembled by [`stack`] when the config
//! loaded; every error the stack returns is answered by [`rescue`].

pub mod generation;
pub mod rescue;
pub mod router;
pub mod stack;
