import { BUILD_DIR, compileAndRun, compiledWith, type LanguageDefinition } from './define.js';

const RUN_PROG = `exec ${BUILD_DIR}/prog "$@"`;

/** C or C++ through one toolchain; gcc and clang sit side by side, each in the versions Debian ships. */
function cFamily(language: 'c' | 'cpp', runtime: 'gcc' | 'clang', compiler: string, versionFlag: string): LanguageDefinition {
  const c = language === 'c';
  const flags = c ? '-O2 -pipe -std=gnu17' : '-O2 -pipe -std=gnu++17';
  return compiledWith(
    language,
    c ? 'main.c' : 'main.cpp',
    c ? ['.c'] : ['.cpp', '.cc', '.cxx'],
    () => compileAndRun(`${compiler} ${flags} -o ${BUILD_DIR}/prog "$0"${c ? ' -lm' : ''}`, RUN_PROG),
    [compiler, versionFlag],
    { aliases: c ? ['gcc', 'clang'] : ['c++', 'g++', 'clang++', 'cxx'], runtime },
  );
}

const C_TOOLCHAINS = [
  ['gcc', 'gcc', 'g++', '-dumpfullversion'],
  ['gcc', 'gcc-11', 'g++-11', '-dumpfullversion'],
  ['clang', 'clang-16', 'clang++-16', '-dumpversion'],
  ['clang', 'clang-15', 'clang++-15', '-dumpversion'],
  ['clang', 'clang-14', 'clang++-14', '-dumpversion'],
] as const;

/** Languages compiled to native code before they run. */
export const COMPILED: readonly LanguageDefinition[] = [
  ...C_TOOLCHAINS.map(([runtime, cc, , flag]) => cFamily('c', runtime, cc, flag)),
  ...C_TOOLCHAINS.map(([runtime, , cxx, flag]) => cFamily('cpp', runtime, cxx, flag)),
  compiledWith(
    'go',
    'main.go',
    ['.go'],
    () => compileAndRun(`go build -o ${BUILD_DIR}/prog "$0"`, RUN_PROG),
    ['go', 'version'],
    // The build cache must be writable; module mode is off so one file (or a folder of them) builds alone.
    { aliases: ['golang'], env: { GOCACHE: `${BUILD_DIR}/go-cache`, GOPATH: '/tmp/go', GO111MODULE: 'off' } },
  ),
  compiledWith(
    'rust',
    'main.rs',
    ['.rs'],
    () => compileAndRun(`rustc --edition 2021 -C opt-level=1 -o ${BUILD_DIR}/prog "$0"`, RUN_PROG),
    ['rustc', '--version'],
    { aliases: ['rs', 'rustc'] },
  ),
  compiledWith(
    'fortran',
    'main.f90',
    ['.f90', '.f95', '.f03', '.f'],
    () => compileAndRun(`gfortran -O2 -pipe -o ${BUILD_DIR}/prog "$0"`, RUN_PROG),
    ['gfortran', '-dumpfullversion'],
    { aliases: ['gfortran', 'f90'] },
  ),
  compiledWith(
    'pascal',
    'main.pas',
    ['.pas', '.pp'],
    // -FE/-FU: the program and its object files go to the build dir, not beside the source.
    () => compileAndRun(`fpc -v0 -O2 -FE${BUILD_DIR} -FU${BUILD_DIR} -o${BUILD_DIR}/prog "$0" >&2`, RUN_PROG),
    ['fpc', '-iV'],
    { aliases: ['fpc', 'freepascal', 'pas'] },
  ),
  compiledWith(
    'd',
    'main.d',
    ['.d'],
    () => compileAndRun(`gdc -O2 -pipe -o ${BUILD_DIR}/prog "$0"`, RUN_PROG),
    ['gdc', '-dumpfullversion'],
    { aliases: ['dlang', 'gdc'], runtime: 'gdc' },
  ),
  compiledWith(
    'd',
    'main.d',
    ['.d'],
    () => compileAndRun(`ldc2 -O -od=${BUILD_DIR} -of=${BUILD_DIR}/prog "$0"`, RUN_PROG),
    ['ldc2', '--version'],
    { aliases: ['dlang', 'ldc'], runtime: 'ldc' },
  ),
  compiledWith(
    'nim',
    'main.nim',
    ['.nim'],
    () => compileAndRun(`nim compile --hints:off --verbosity:0 --nimcache:${BUILD_DIR}/nimcache -o:${BUILD_DIR}/prog "$0"`, RUN_PROG),
    ['nim', '--version'],
  ),
  compiledWith(
    'crystal',
    'main.cr',
    ['.cr'],
    () => compileAndRun(`crystal build --no-color --threads 1 -o ${BUILD_DIR}/prog "$0"`, RUN_PROG),
    ['crystal', '--version'],
    { aliases: ['cr'], env: { CRYSTAL_CACHE_DIR: `${BUILD_DIR}/crystal-cache` } },
  ),
  compiledWith(
    'ada',
    'main.adb',
    ['.adb'],
    () => compileAndRun(`cd ${BUILD_DIR} && gnatmake -q -o prog "/workspace/$0" >&2 && cd /workspace`, RUN_PROG),
    ['gnatmake', '--version'],
    { aliases: ['gnat', 'adb'] },
  ),
  compiledWith(
    'cobol',
    'main.cob',
    ['.cob', '.cbl'],
    () => compileAndRun(`cobc -x -free -O -o ${BUILD_DIR}/prog "$0"`, RUN_PROG),
    ['cobc', '--version'],
    { aliases: ['cob', 'cbl', 'gnucobol'] },
  ),
  compiledWith(
    'nasm',
    'main.asm',
    ['.asm', '.s'],
    // x86-64 Linux: the program is its own _start and speaks to the kernel by syscalls.
    () => compileAndRun(`nasm -f elf64 -o ${BUILD_DIR}/prog.o "$0" && ld -o ${BUILD_DIR}/prog ${BUILD_DIR}/prog.o`, RUN_PROG),
    ['nasm', '-v'],
    { aliases: ['asm', 'assembly', 'nasm64'] },
  ),
];
