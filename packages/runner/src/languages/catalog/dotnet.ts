import { BUILD_DIR, compileAndRun, compiledWith, type LanguageDefinition } from './define.js';

/**
 * .NET languages through Mono, the only .NET Debian 12 ships: C# (mcs). Debian has neither F# nor
 * VB.NET's compiler (vbnc) in bookworm, nor Microsoft's dotnet SDK.
 */
export const DOTNET: readonly LanguageDefinition[] = [
  compiledWith(
    'csharp',
    'main.cs',
    ['.cs'],
    () => compileAndRun(`mcs -nologo -optimize+ -out:${BUILD_DIR}/prog.exe "$0"`, `exec mono ${BUILD_DIR}/prog.exe "$@"`),
    ['mcs', '--version'],
    // Mono keeps its per-user settings under HOME; the workspace would collect them.
    { aliases: ['cs', 'c#', 'mono', 'mcs'], env: { XDG_CONFIG_HOME: '/tmp/.config', MONO_GC_PARAMS: 'max-heap-size=256m' } },
  ),
];
