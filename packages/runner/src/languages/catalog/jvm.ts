import { BUILD_DIR, compileAndRun, compiledWith, interpreted, type LanguageDefinition } from './define.js';

/** A JVM that starts fast for short programs: one GC thread, the C1 compiler only, the shared archive. */
export const JAVA_FAST_START = '-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto';

/** Compilers that run on the JVM start one; JAVA_OPTS reaches kotlinc, scalac and groovy's launchers. */
const JVM_TOOL_ENV = { JAVA_OPTS: '-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss4m' };

/** Languages that run on the JVM (OpenJDK 17, the only one Debian 12 ships). */
export const JVM: readonly LanguageDefinition[] = [
  compiledWith(
    'java',
    'Main.java',
    ['.java'],
    () =>
      compileAndRun(
        `javac -J-XX:+UseSerialGC -J-XX:TieredStopAtLevel=1 -encoding UTF-8 -d ${BUILD_DIR} "$0"`,
        // The class is the file's base name, taken by the shell: a file name is never script text.
        `exec java ${JAVA_FAST_START} -cp ${BUILD_DIR}:/workspace "$(basename "$0" .java)" "$@"`,
      ),
    ['javac', '-version'],
    { aliases: ['openjdk'] },
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
    // Debian's kotlinc calls itself 1.3-SNAPSHOT: its Debian changelog's first line names the release.
    ['sh', '-c', 'command -v kotlinc >/dev/null && zcat /usr/share/doc/kotlin/changelog.Debian.gz | head -n 1'],
    { aliases: ['kt'], env: JVM_TOOL_ENV },
  ),
  compiledWith(
    'scala',
    'Main.scala',
    ['.scala'],
    // The program is `object Main`, as in Java the class is the file's name.
    () =>
      compileAndRun(
        `scalac -nowarn -d ${BUILD_DIR} "$0"`,
        `exec scala -nc -cp ${BUILD_DIR} Main "$@"`,
      ),
    ['scala', '-version'],
    { aliases: ['sc'], env: JVM_TOOL_ENV },
  ),
  interpreted('groovy', 'main.groovy', ['.groovy', '.gvy'], ['groovy'], ['groovy', '--version'], {
    aliases: ['gvy'],
    env: JVM_TOOL_ENV,
  }),
  interpreted('clojure', 'main.clj', ['.clj'], ['clojure'], ['clojure', '-e', '(clojure-version)'], {
    aliases: ['clj'],
    env: JVM_TOOL_ENV,
  }),
];
