/**
 * Glob matching in time linear in the input, for `collect` globs a tenant writes and file names a sandbox
 * makes. No regular expression is built from a pattern: V8's backtracking engine takes exponential time on
 * `*a*a*a*a*a*a*a*a*a*a*a*a*b` against 60 `a`s, which froze a runner's event loop. Instead the globs are
 * compiled to one nondeterministic automaton that is run on all its states at once (Thompson's
 * construction): each input character costs at most one visit per state (plus the states a run of
 * consecutive wildcards reaches for free), so matching a path of n characters against globs of k
 * characters in total takes O(n·k) steps (O(n·k·w) with runs of w wildcards), never exponential.
 *
 * Semantics (those of the former regex translation):
 * - `*` matches any run of characters except `/`; `?` exactly one character except `/`;
 * - `**` followed by `/` matches zero or more whole folders (`**` + `/x` matches `x` and `a/b/x`);
 *   `**` elsewhere matches any run of characters, `/` included (`out/**` matches everything below `out/`);
 * - every other character, `[`, `]`, `{` and `\` included, matches itself (no classes or braces).
 *
 * Matching is incremental: a walk advances the state set through a folder's name once and carries it to
 * the folder's children, and a folder whose set is empty cannot hold a match, so it is not walked.
 */

type Token =
  | { kind: 'char'; char: string }
  /** `?` */
  | { kind: 'one' }
  /** `*` */
  | { kind: 'star' }
  /** `**` not followed by `/` */
  | { kind: 'any' }
  /** the entry of `**` + `/`: may skip the whole group */
  | { kind: 'dirs-entry' }
  /** inside `**` + `/`: any characters, left after a `/` */
  | { kind: 'dirs-loop' }
  /** after the last token of one glob */
  | { kind: 'accept' };

function tokenize(glob: string): Token[] {
  const tokens: Token[] = [];
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*' && glob[i + 1] === '*') {
      if (glob[i + 2] === '/') {
        tokens.push({ kind: 'dirs-entry' }, { kind: 'dirs-loop' });
        i += 2;
      } else {
        tokens.push({ kind: 'any' });
        i += 1;
      }
    } else if (c === '*') {
      tokens.push({ kind: 'star' });
    } else if (c === '?') {
      tokens.push({ kind: 'one' });
    } else {
      tokens.push({ kind: 'char', char: c });
    }
  }
  tokens.push({ kind: 'accept' });
  return tokens;
}

/** Counts the automaton's work, so a caller can bound it (and a test can check it is linear). */
export interface GlobMeter {
  steps: number;
}

/** The set of automaton states reached after some prefix of a path. Immutable. */
export type GlobState = Int32Array;

/** Several globs compiled into one automaton: a path matches when it matches any of them. */
export class GlobSet {
  private readonly tokens: Token[] = [];
  /** Per state: the states reachable without consuming a character (itself first). */
  private readonly closures: Int32Array[] = [];
  /** Visit marks for de-duplicating a step's next states; `generation` avoids clearing them. */
  private readonly marks: Uint32Array;
  private generation = 0;
  private readonly initial: GlobState;

  constructor(globs: readonly string[]) {
    const starts: number[] = [];
    for (const glob of globs) {
      starts.push(this.tokens.length);
      this.tokens.push(...tokenize(glob));
    }
    this.marks = new Uint32Array(this.tokens.length);
    for (let s = 0; s < this.tokens.length; s++) this.closures.push(this.closureOf(s));
    this.initial = this.union(starts);
  }

  /** The states before any character: advance from here with a path's characters. */
  start(): GlobState {
    return this.initial;
  }

  /**
   * The states after reading `text` from `from`. Per character, each live state is visited once and adds
   * its successor's closure (a chain of consecutive wildcards): O(states × wildcards) at worst, counted
   * in `meter.steps`, one step per state visited or added.
   */
  advance(from: GlobState, text: string, meter?: GlobMeter): GlobState {
    let current = from;
    let steps = 0;
    for (let i = 0; i < text.length && current.length > 0; i++) {
      const c = text[i] as string;
      const next: number[] = [];
      this.generation++;
      const add = (state: number) => {
        if (this.marks[state] === this.generation) return;
        // A closure is transitively closed: its members' closures are in it, so they need no visit.
        for (const s of this.closures[state] as Int32Array) {
          steps++;
          if (this.marks[s] !== this.generation) {
            this.marks[s] = this.generation;
            next.push(s);
          }
        }
      };
      for (const s of current) {
        const token = this.tokens[s] as Token;
        switch (token.kind) {
          case 'char':
            if (token.char === c) add(s + 1);
            break;
          case 'one':
            if (c !== '/') add(s + 1);
            break;
          case 'star':
            if (c !== '/') add(s);
            break;
          case 'any':
            add(s);
            break;
          case 'dirs-loop':
            add(s);
            if (c === '/') add(s + 1);
            break;
          case 'dirs-entry':
          case 'accept':
            break;
        }
      }
      steps += current.length;
      current = Int32Array.from(next);
    }
    if (meter) meter.steps += steps;
    return current;
  }

  /** Whether the text read so far matches a glob. */
  accepts(state: GlobState): boolean {
    for (const s of state) if ((this.tokens[s] as Token).kind === 'accept') return true;
    return false;
  }

  /** Whether some continuation of the text read so far could still match: false means prune. */
  alive(state: GlobState): boolean {
    return state.length > 0;
  }

  /** Whether `path` matches any of the globs. */
  matches(path: string, meter?: GlobMeter): boolean {
    return this.accepts(this.advance(this.initial, path, meter));
  }

  private closureOf(state: number): Int32Array {
    const out: number[] = [];
    const stack = [state];
    const seen = new Set<number>();
    while (stack.length > 0) {
      const s = stack.pop() as number;
      if (seen.has(s)) continue;
      seen.add(s);
      out.push(s);
      const kind = (this.tokens[s] as Token).kind;
      if (kind === 'star' || kind === 'any') stack.push(s + 1);
      if (kind === 'dirs-entry') stack.push(s + 1, s + 2);
    }
    return Int32Array.from(out);
  }

  private union(states: number[]): GlobState {
    const out = new Set<number>();
    for (const s of states) for (const c of this.closures[s] as Int32Array) out.add(c);
    return Int32Array.from(out);
  }
}

/** Whether `path` matches `glob` (see GlobSet for the semantics). */
export function globMatches(glob: string, path: string, meter?: GlobMeter): boolean {
  return new GlobSet([glob]).matches(path, meter);
}
