import { interpreted, type LanguageDefinition } from './define.js';

/**
 * What the default Python offers to `import` / `require`, all from Debian packages (set-up
 * installs them). Matplotlib draws with Agg: there is no display in a sandbox, and Agg writes PNGs.
 */
export const PYTHON_LIBRARIES = ['numpy', 'pandas', 'scipy', 'matplotlib', 'scikit-learn', 'sympy', 'requests', 'pillow', 'PyYAML'] as const;

const lua = (version: string): LanguageDefinition =>
  interpreted('lua', 'main.lua', ['.lua'], [`lua${version}`], [`lua${version}`, '-v'], { runtime: `lua${version}` });

/** Interpreted languages, the shells and the small tools (awk, bc, SQL). */
export const SCRIPTING: readonly LanguageDefinition[] = [
  interpreted('python', 'main.py', ['.py'], ['python3', '-B'], ['python3', '-c', 'import platform; print(platform.python_version())'], {
    aliases: ['py', 'python3', 'py3'],
    runtime: 'cpython',
    streamingEnv: { PYTHONUNBUFFERED: '1' },
    // MPLCONFIGDIR: matplotlib wants a writable cache; HOME is the workspace, which would collect it.
    env: { MPLBACKEND: 'Agg', MPLCONFIGDIR: '/tmp/.matplotlib' },
    libraries: PYTHON_LIBRARIES,
  }),
  // PyPy implements Python 3.9 and has its own version: a language of its own, not a Python version.
  interpreted('pypy', 'main.py', ['.py'], ['pypy3', '-B'], ['pypy3', '-c', 'import sys; print("%d.%d.%d" % sys.pypy_version_info[:3])'], {
    aliases: ['pypy3'],
    streamingEnv: { PYTHONUNBUFFERED: '1' },
  }),
  interpreted('bash', 'main.sh', ['.sh', '.bash'], ['bash'], ['bash', '-c', 'echo "${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}.${BASH_VERSINFO[2]}"']),
  // dash has no --version; its Debian changelog's first line names the packaged version.
  interpreted('sh', 'main.sh', ['.sh'], ['sh'], ['sh', '-c', 'zcat /usr/share/doc/dash/changelog.Debian.gz | head -n 1'], { aliases: ['dash'] }),
  interpreted('zsh', 'main.zsh', ['.zsh'], ['zsh', '-f'], ['zsh', '-fc', 'echo $ZSH_VERSION']),
  interpreted('perl', 'main.pl', ['.pl'], ['perl'], ['perl', '-e', 'printf "%vd\\n", $^V'], { aliases: ['perl5'] }),
  interpreted('raku', 'main.raku', ['.raku', '.p6'], ['raku'], ['raku', '-e', 'say $*RAKU.compiler.version'], {
    aliases: ['perl6', 'rakudo'],
  }),
  interpreted('tcl', 'main.tcl', ['.tcl'], ['tclsh'], ['sh', '-c', 'echo "puts [info patchlevel]" | tclsh'], { aliases: ['tclsh'] }),
  interpreted('ruby', 'main.rb', ['.rb'], ['ruby'], ['ruby', '-e', 'print RUBY_VERSION'], { aliases: ['rb'] }),
  interpreted('php', 'main.php', ['.php'], ['php'], ['php', '-r', 'echo PHP_VERSION;']),
  lua('5.4'),
  lua('5.3'),
  lua('5.1'),
  interpreted('luajit', 'main.lua', ['.lua'], ['luajit'], ['luajit', '-v']),
  interpreted('r', 'main.R', ['.R', '.r'], ['Rscript', '--vanilla'], ['Rscript', '-e', 'cat(paste(R.version$major, R.version$minor, sep = "."))'], {
    aliases: ['rscript'],
  }),
  interpreted('octave', 'main.m', ['.m'], ['octave-cli', '--quiet', '--norc', '--no-history', '--no-window-system'], ['octave-cli', '--version'], {
    aliases: ['matlab'],
  }),
  // awk takes its arguments as input files unless the program clears them (ARGV), as awk always has.
  interpreted('awk', 'main.awk', ['.awk'], ['gawk', '-f'], ['gawk', '--version'], { aliases: ['gawk'] }),
  // bc has no exit status of its own: it ends 0 after `halt` and after its own errors (on stderr).
  interpreted('bc', 'main.bc', ['.bc'], ['bc', '-q'], ['bc', '--version']),
  {
    // The program runs from `.read`, so stdin stays the program's input (`.import '|cat -' t`); `.exit N`
    // sets the exit code and -bail makes an error end the run with 1. SQLite takes no arguments.
    ...interpreted('sqlite', 'main.sql', ['.sql'], ['sqlite3'], ['sqlite3', '--version'], { aliases: ['sqlite3', 'sql'] }),
    command: (entrypoint) => ['sqlite3', '-bail', '-batch', ':memory:', `.read '${entrypoint.replaceAll("'", "''")}'`],
  },
  interpreted('basic', 'main.bas', ['.bas'], ['yabasic'], ['yabasic', '--version'], { aliases: ['yabasic'] }),
  interpreted('forth', 'main.fs', ['.fs', '.fth', '.4th'], ['gforth'], ['gforth', '--version'], { aliases: ['gforth'] }),
];
