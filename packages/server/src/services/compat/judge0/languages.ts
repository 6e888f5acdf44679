/**
 * Judge0 CE's numeric language ids for the languages kiln offers or will offer. Judge0 gives a language
 * a new id per toolchain version (C is 48, 49, 50 and 103 for GCC 7, 8, 9 and 14); kiln has one
 * toolchain per language today, so every id of a language's family runs it, and `GET /languages` lists
 * the family's first id (the one clients hard-code) named with the version kiln really runs.
 */
export interface Judge0Language {
  /** Judge0 CE's id, listed by `GET /languages` */
  id: number;
  /** Judge0's name without the version: `C (GCC %s)` */
  name: string;
  /** The kiln language it runs as. */
  kiln: string;
  /** Judge0 CE's other ids of the same language (newer or older toolchains), accepted in submissions. */
  alsoIds?: readonly number[];
  compiled: boolean;
}

export const JUDGE0_LANGUAGES: readonly Judge0Language[] = [
  { id: 45, name: 'Assembly (NASM %s)', kiln: 'nasm', compiled: true },
  { id: 46, name: 'Bash (%s)', kiln: 'bash', compiled: false },
  { id: 47, name: 'Basic (FBC %s)', kiln: 'basic', compiled: true },
  { id: 50, name: 'C (GCC %s)', kiln: 'c', alsoIds: [48, 49, 103], compiled: true },
  { id: 54, name: 'C++ (GCC %s)', kiln: 'cpp', alsoIds: [52, 53, 105], compiled: true },
  { id: 86, name: 'Clojure (%s)', kiln: 'clojure', compiled: false },
  { id: 51, name: 'C# (Mono %s)', kiln: 'csharp', compiled: true },
  { id: 77, name: 'COBOL (GnuCOBOL %s)', kiln: 'cobol', compiled: true },
  { id: 55, name: 'Common Lisp (SBCL %s)', kiln: 'commonlisp', compiled: false },
  { id: 56, name: 'D (DMD %s)', kiln: 'd', compiled: true },
  { id: 57, name: 'Elixir (%s)', kiln: 'elixir', compiled: false },
  { id: 58, name: 'Erlang (OTP %s)', kiln: 'erlang', compiled: false },
  { id: 87, name: 'F# (.NET Core SDK %s)', kiln: 'fsharp', compiled: true },
  { id: 59, name: 'Fortran (GFortran %s)', kiln: 'fortran', compiled: true },
  { id: 60, name: 'Go (%s)', kiln: 'go', alsoIds: [95, 106, 107], compiled: true },
  { id: 88, name: 'Groovy (%s)', kiln: 'groovy', compiled: false },
  { id: 61, name: 'Haskell (GHC %s)', kiln: 'haskell', compiled: true },
  { id: 62, name: 'Java (OpenJDK %s)', kiln: 'java', alsoIds: [91], compiled: true },
  { id: 63, name: 'JavaScript (Node.js %s)', kiln: 'node', alsoIds: [93, 97, 102], compiled: false },
  { id: 78, name: 'Kotlin (%s)', kiln: 'kotlin', compiled: true },
  { id: 64, name: 'Lua (%s)', kiln: 'lua', compiled: false },
  { id: 65, name: 'OCaml (%s)', kiln: 'ocaml', compiled: true },
  { id: 66, name: 'Octave (%s)', kiln: 'octave', compiled: false },
  { id: 67, name: 'Pascal (FPC %s)', kiln: 'pascal', compiled: true },
  { id: 85, name: 'Perl (%s)', kiln: 'perl', compiled: false },
  { id: 68, name: 'PHP (%s)', kiln: 'php', alsoIds: [98], compiled: false },
  { id: 69, name: 'Prolog (GNU Prolog %s)', kiln: 'prolog', compiled: false },
  { id: 71, name: 'Python (%s)', kiln: 'python', alsoIds: [92, 100], compiled: false },
  { id: 80, name: 'R (%s)', kiln: 'r', alsoIds: [99], compiled: false },
  { id: 72, name: 'Ruby (%s)', kiln: 'ruby', compiled: false },
  { id: 73, name: 'Rust (%s)', kiln: 'rust', alsoIds: [108], compiled: true },
  { id: 81, name: 'Scala (%s)', kiln: 'scala', compiled: true },
  { id: 82, name: 'SQL (SQLite %s)', kiln: 'sqlite', compiled: false },
  { id: 83, name: 'Swift (%s)', kiln: 'swift', compiled: true },
  { id: 74, name: 'TypeScript (%s)', kiln: 'typescript', alsoIds: [94, 101], compiled: true },
  { id: 84, name: 'Visual Basic.Net (vbnc %s)', kiln: 'vb', compiled: true },
];

const BY_ID = new Map<number, Judge0Language>();
for (const language of JUDGE0_LANGUAGES) {
  BY_ID.set(language.id, language);
  for (const id of language.alsoIds ?? []) BY_ID.set(id, language);
}

/** The Judge0 language of an id (any id of its family), or undefined. */
export function judge0Language(id: number): Judge0Language | undefined {
  return BY_ID.get(id);
}

/** `C (GCC 12.2.0)`: Judge0's name with the version kiln runs. */
export function judge0LanguageName(language: Judge0Language, version: string | undefined): string {
  return language.name.replace('%s', version ?? 'unknown').replace(' (unknown)', '');
}
