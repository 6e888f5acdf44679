import { BUILD_DIR, baseName, compileAndRun, compiledWith, interpreted, type LanguageDefinition } from './define.js';

/** A JVM that starts fast for short programs: one GC thread, the C1 compiler only, the shared archive. */
export const JAVA_FAST_START = '-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto';

/** Compilers that run on the JVM start one; JAVA_OPTS reaches kotlinc, scalac and groovy's launchers. */
const JVM_TOOL_ENV = { JAVA_OPTS: '-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss4m' };

/** A JVM needs threads (the pids limit counts them) and address space for its heap and code cache. */
const JVM_NEEDS = { memory_bytes: 512 * 1024 * 1024, pids: 64 };

/** Languages that run on the JVM (OpenJDK 17, the only one Debian 12 ships). */
export const JVM: readonly LanguageDefinition[] = [
  compiledWith(
    'java',
    'Main.java',
    ['.java'],
    (entrypoint) =>
      compileAndRun(
        `javac -J-XX:+UseSerialGC -J-XX:TieredStopAtLevel=1 -encoding UTF-8 -d ${BUILD_DIR} "$0"`,
        `exec java ${JAVA_FAST_START} -cp ${BUILD_DIR}:/workspace ${baseName(entrypoint, '.java')} "$@"`,
      ),
    ['javac', '-version'],
    { aliases: ['openjdk'], needs: JVM_NEEDS },
  ),
  compiledWith(
    'kotlin',
    'main.kt',
    ['.kt'],
    () =>
      compileAndRun(
        `kotlinc -nowarn "$0" -include-runtime -d ${BUILD_DIR}/prog.jar`,
        `exec java ${JAVA_FAST_START} -jar ${BUILD_DIR}/prog.jar "$@"`,
      ),
    ['kotlinc', '-version'],
    { aliases: ['kt'], env: JVM_TOOL_ENV, needs: { memory_bytes: 768 * 1024 * 1024, pids: 128 } },
  ),
  compiledWith(
    'scala',
    'Main.scala',
    ['.scala'],
    // The program is `object Main` (any name: the runner reads the one that has main from the output).
    () =>
      compileAndRun(
        `scalac -nowarn -d ${BUILD_DIR} "$0"`,
        `exec scala -nc -cp ${BUILD_DIR} Main "$@"`,
      ),
    ['scala', '-version'],
    { aliases: ['sc'], env: JVM_TOOL_ENV, needs: { memory_bytes: 768 * 1024 * 1024, pids: 128 } },
  ),
  interpreted('groovy', 'main.groovy', ['.groovy', '.gvy'], ['groovy'], ['groovy', '--version'], {
    aliases: ['gvy'],
    env: JVM_TOOL_ENV,
    needs: { memory_bytes: 768 * 1024 * 1024, pids: 128 },
  }),
  interpreted('clojure', 'main.clj', ['.clj'], ['clojure'], ['clojure', '-e', '(clojure-version)'], {
    aliases: ['clj'],
    env: JVM_TOOL_ENV,
    needs: JVM_NEEDS,
  }),
];
