import { BUILD_DIR, compileAndRun, compiledWith, interpreted, type LanguageDefinition } from './define.js';

/** Functional and logic languages, the Lisps and the BEAM. */
export const FUNCTIONAL: readonly LanguageDefinition[] = [
  compiledWith(
    'haskell',
    'main.hs',
    ['.hs'],
    // Debian keeps GHC's package database under /var, which the sandbox does not have: the set-up copies
    // it into the sandbox's /etc (sandbox-etc.ts) and GHC is pointed there.
    () =>
      compileAndRun(
        `ghc -v0 -O0 -no-global-package-db -package-db /etc/ghc/package.conf.d -outputdir ${BUILD_DIR} -o ${BUILD_DIR}/prog "$0" >&2`,
        `exec ${BUILD_DIR}/prog "$@"`,
      ),
    ['ghc', '--numeric-version'],
    { aliases: ['hs', 'ghc'] },
  ),
  compiledWith(
    'ocaml',
    'main.ml',
    ['.ml'],
    // ocamlopt writes .cmi/.cmx beside the source: compile a copy in the build dir instead.
    () =>
      compileAndRun(
        `cp "$0" ${BUILD_DIR}/main.ml && ocamlopt -o ${BUILD_DIR}/prog ${BUILD_DIR}/main.ml`,
        `exec ${BUILD_DIR}/prog "$@"`,
      ),
    ['ocamlopt', '-version'],
    { aliases: ['ml'] },
  ),
  compiledWith(
    'erlang',
    'main.erl',
    ['.erl'],
    () =>
      compileAndRun(
        `erlc -o ${BUILD_DIR} "$0"`,
        // The module is the file's base name, as Erlang requires; main/1 gets the arguments as strings
        // and the program ends when main returns (or calls halt/1 with its own code).
        `exec erl -noshell -pa ${BUILD_DIR} -eval "$(basename "$0" .erl):main(init:get_plain_arguments()), halt()." -extra "$@"`,
      ),
    [
      'erl',
      '-noshell',
      '-eval',
      '{ok, V} = file:read_file(filename:join([code:root_dir(), "releases", erlang:system_info(otp_release), "OTP_VERSION"])), io:put_chars(V), halt().',
    ],
    // The BEAM gets SIGXFSZ at start under a file size limit of 2 MB (the default is 16 MiB).
    { aliases: ['erl'] },
  ),
  interpreted('elixir', 'main.exs', ['.exs', '.ex'], ['elixir'], ['elixir', '-e', 'IO.puts(System.version())'], {
    aliases: ['ex', 'exs'],
  }),
  interpreted('racket', 'main.rkt', ['.rkt'], ['racket'], ['racket', '--version'], { aliases: ['rkt'] }),
  interpreted('scheme', 'main.scm', ['.scm', '.ss'], ['guile', '--no-auto-compile', '-s'], ['guile', '--version'], {
    aliases: ['guile', 'scm'],
    runtime: 'guile',
  }),
  interpreted('commonlisp', 'main.lisp', ['.lisp', '.cl', '.lsp'], ['sbcl', '--script'], ['sbcl', '--version'], {
    aliases: ['lisp', 'cl', 'sbcl', 'common-lisp'],
    runtime: 'sbcl',
  }),
  interpreted('prolog', 'main.pro', ['.pro', '.prolog'], ['swipl'], ['swipl', '--version'], { aliases: ['swipl', 'swi-prolog'], runtime: 'swi-prolog' }),
];
