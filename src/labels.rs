//! Enums whose variants are names: log words, metric label values, and
//! the index of a counter. Each is written once, as one list, with
//! [`labels!`]: the enum, `ALL` (every variant, in the order of the list),
//! `COUNT`, `as_str` (the stable name) and `Display` all come from it, so a
//! variant cannot be missing from `ALL`, and a counter array sized by
//! `COUNT` and indexed by `variant as usize` cannot be indexed out of
//! bounds: adding a variant cannot crash a worker.

/// Declares an enum of named variants (`Variant = "name",`), with `ALL`,
/// `COUNT`, `as_str` and `Display`.
macro_rules! labels {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $label:literal,
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                $variant,
            )+
        }

        // Not every list needs every item (a list private to the crate may
        // not render itself, say).
        #[allow(dead_code)]
        impl $name {
            /// How many there are: the length of counter arrays indexed by
            /// `self as usize`.
            pub const COUNT: usize = [$($label),+].len();

            /// Every one, in the order of the list (which is each one's
            /// `self as usize`, and the order metrics render them in).
            pub const ALL: [$name; $name::COUNT] = [$($name::$variant),+];

            /// The stable name, as in log lines and metric labels.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use labels;

#[cfg(test)]
mod tests {
    labels! {
        /// A list to test the macro with.
        enum Colour {
            /// The first.
            Red = "red",
            Green = "green",
            Blue = "blue",
        }
    }

    #[test]
    fn all_lists_every_variant_in_order_of_its_index() {
        assert_eq!(Colour::COUNT, 3);
        assert_eq!(Colour::ALL, [Colour::Red, Colour::Green, Colour::Blue]);
        for (i, c) in Colour::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        assert_eq!(Colour::Green.as_str(), "green");
        assert_eq!(Colour::Blue.to_string(), "blue");
    }
}
