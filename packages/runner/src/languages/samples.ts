/**
 * One small program set per catalog language, shared by the catalog's tests and its benchmark
 * (bench/languages): `hello` prints `hello, world` and echoes its first stdin line as `got: LINE`, then
 * exits 0; `exit` exits with code 3 (when absent, `hello` run with the argument `3` does); `broken`
 * (compiled languages) fails to compile. `stdin`/`expected` replace the usual line where a language
 * cannot read text (bc reads numbers).
 */
export interface LanguageSample {
  hello: string;
  exit?: string;
  broken?: string;
  stdin?: string;
  expected?: string;
}

export const SAMPLE_STDIN = 'ping from stdin\n';
export const SAMPLE_OUTPUT = 'hello, world\ngot: ping from stdin\n';

const python = `import sys
print("hello, world")
line = sys.stdin.readline().strip()
print("got: " + line)
if sys.argv[1] == "crash":
    print(1 // 0)
sys.exit(int(sys.argv[1]))
`;

const posixShell = `echo "hello, world"
read -r line
echo "got: $line"
if [ "$1" = crash ]; then set -u; echo "$undefined_variable"; fi
exit "$1"
`;

const nodeHello = `const fs = require('fs');
console.log('hello, world');
const line = fs.readFileSync(0, 'utf8').split('\\n')[0];
console.log('got: ' + line);
if (process.argv[2] === 'crash') null.boom();
process.exitCode = Number(process.argv[2]);
`;

const cHello = `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
  char line[256] = "";
  printf("hello, world\\n");
  if (fgets(line, sizeof line, stdin)) line[strcspn(line, "\\n")] = 0;
  printf("got: %s\\n", line);
  fflush(stdout);
  if (argc > 1 && strcmp(argv[1], "crash") == 0) { volatile int *p = NULL; *p = 1; }
  return argc > 1 ? atoi(argv[1]) : 0;
}
`;

const luaHello = `print("hello, world")
local l = io.read("*l") or ""
print("got: " .. l)
if arg[1] == "crash" then error("boom") end
os.exit(tonumber(arg[1]))
`;

/** The languages whose `hello` also crashes at run time when its argument is `crash`. */
export const CRASHING_SAMPLES = ['python', 'node', 'bash', 'sh', 'c', 'cpp', 'java', 'perl', 'tcl', 'ruby', 'php', 'lua'] as const;

export const SAMPLES: Record<string, LanguageSample> = {
  python: { hello: python },
  pypy: { hello: python },
  node: { hello: nodeHello },
  typescript: {
    hello: `const fs = require('fs');
const line: string = fs.readFileSync(0, 'utf8').split('\\n')[0];
console.log('hello, world');
console.log('got: ' + line);
`,
    exit: 'const code: number = 3;\nprocess.exitCode = code;\n',
    broken: 'const n: number = "not a number";\nconsole.log(n);\n',
  },
  coffeescript: {
    hello: `fs = require 'fs'
console.log 'hello, world'
line = fs.readFileSync(0, 'utf8').split('\\n')[0]
console.log 'got: ' + line
`,
    exit: 'process.exit 3\n',
  },
  bash: {
    hello: `echo "hello, world"
read -r line
echo "got: $line"
if [[ "$1" == crash ]]; then set -u; echo "$undefined_variable"; fi
exit "$1"
`,
  },
  sh: { hello: posixShell },
  zsh: { hello: posixShell },
  perl: {
    hello: `print "hello, world\\n";
my $l = <STDIN>; chomp $l;
print "got: $l\\n";
die "boom\\n" if $ARGV[0] eq "crash";
exit $ARGV[0];
`,
  },
  raku: {
    hello: `say "hello, world";
my $l = $*IN.get // "";
say "got: $l";
`,
    exit: 'exit 3;\n',
  },
  tcl: {
    hello: `puts "hello, world"
gets stdin line
puts "got: $line"
if {[lindex $argv 0] eq "crash"} { error boom }
exit [lindex $argv 0]
`,
  },
  ruby: {
    hello: `puts "hello, world"
l = $stdin.gets.to_s.chomp
puts "got: #{l}"
raise "boom" if ARGV[0] == "crash"
exit ARGV[0].to_i
`,
  },
  php: {
    hello: `<?php
echo "hello, world\\n";
$l = trim((string) fgets(STDIN));
echo "got: $l\\n";
if ($argv[1] === "crash") { throw new Exception("boom"); }
exit((int) $argv[1]);
`,
  },
  lua: { hello: luaHello },
  luajit: { hello: luaHello },
  r: {
    hello: `cat("hello, world\\n")
con <- file("stdin")
l <- readLines(con, n = 1)
close(con)
cat("got: ", l, "\\n", sep = "")
`,
    exit: 'quit(status = 3)\n',
  },
  octave: {
    hello: `printf("hello, world\\n");
l = fgetl(stdin);
printf("got: %s\\n", l);
`,
    exit: 'exit(3);\n',
  },
  awk: {
    hello: `BEGIN { print "hello, world" }
NR == 1 { print "got: " $0 }
`,
    exit: 'BEGIN { exit 3 }\n',
  },
  bc: {
    hello: `print "hello, world\\n"
x = read()
print "got: ", x, "\\n"
halt
`,
    stdin: '42\n',
    expected: 'hello, world\ngot: 42\n',
  },
  sqlite: {
    hello: `select 'hello, world';
create table input(line text);
.import '|cat -' input
select 'got: ' || line from input limit 1;
`,
    exit: '.exit 3\n',
  },
  basic: {
    hello: `print "hello, world"
line input "" l$
print "got: " + l$
`,
    exit: 'exit 3\n',
  },
  forth: {
    hello: `." hello, world" cr
create buf 256 allot
." got: " buf 256 stdin read-line throw drop buf swap type cr
bye
`,
    exit: '3 (bye)\n',
  },
  c: { hello: cHello, broken: 'int main( { return 0; }\n' },
  cpp: {
    hello: `#include <iostream>
#include <stdexcept>
#include <string>
int main(int argc, char **argv) {
  std::string line;
  std::cout << "hello, world" << std::endl;
  std::getline(std::cin, line);
  std::cout << "got: " << line << std::endl;
  if (std::string(argv[1]) == "crash") throw std::runtime_error("boom");
  return std::stoi(argv[1]);
}
`,
    broken: 'int main() { undefined_function(); }\n',
  },
  go: {
    hello: `package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

func main() {
	fmt.Println("hello, world")
	l, _ := bufio.NewReader(os.Stdin).ReadString('\\n')
	fmt.Println("got: " + strings.TrimRight(l, "\\n"))
}
`,
    exit: 'package main\n\nimport "os"\n\nfunc main() { os.Exit(3) }\n',
    broken: 'package main\n\nfunc main() { x := 1 }\n',
  },
  rust: {
    hello: `use std::io::BufRead;
fn main() {
    println!("hello, world");
    let mut l = String::new();
    std::io::stdin().lock().read_line(&mut l).unwrap();
    println!("got: {}", l.trim_end());
}
`,
    exit: 'fn main() { std::process::exit(3); }\n',
    broken: 'fn main() { let x: i32 = "a"; }\n',
  },
  fortran: {
    hello: `program main
  character(len=256) :: l
  print '(a)', 'hello, world'
  read (*, '(a)') l
  print '(a)', 'got: ' // trim(l)
end program main
`,
    exit: 'program main\n  call exit(3)\nend program main\n',
    broken: 'program main\n  x = \nend program main\n',
  },
  pascal: {
    hello: `program main;
var l: string;
begin
  writeln('hello, world');
  readln(l);
  writeln('got: ', l);
end.
`,
    exit: 'program main;\nbegin\n  halt(3);\nend.\n',
    broken: 'program main;\nbegin\n  undefined_procedure;\nend.\n',
  },
  d: {
    hello: `import std.stdio, std.string;
void main() {
    writeln("hello, world");
    auto l = readln().chomp;
    writeln("got: ", l);
}
`,
    exit: 'int main() { return 3; }\n',
    broken: 'void main() { int x = "a"; }\n',
  },
  nim: {
    hello: 'echo "hello, world"\nlet l = stdin.readLine()\necho "got: ", l\n',
    exit: 'quit(3)\n',
    broken: 'let x: int = "a"\n',
  },
  crystal: {
    hello: 'puts "hello, world"\nl = STDIN.gets || ""\nputs "got: #{l}"\n',
    exit: 'exit 3\n',
    broken: 'x : Int32 = "a"\n',
  },
  ada: {
    hello: `with Ada.Text_IO; use Ada.Text_IO;
procedure Main is
begin
   Put_Line ("hello, world");
   declare
      L : constant String := Get_Line;
   begin
      Put_Line ("got: " & L);
   end;
end Main;
`,
    exit: `with Ada.Command_Line;
procedure Main is
begin
   Ada.Command_Line.Set_Exit_Status (3);
end Main;
`,
    broken: 'procedure Main is\nbegin\n   null\nend Main;\n',
  },
  cobol: {
    hello: `IDENTIFICATION DIVISION.
PROGRAM-ID. MAIN.
DATA DIVISION.
WORKING-STORAGE SECTION.
01 L PIC X(256).
PROCEDURE DIVISION.
    DISPLAY "hello, world".
    ACCEPT L.
    DISPLAY "got: " FUNCTION TRIM(L).
    STOP RUN.
`,
    exit: `IDENTIFICATION DIVISION.
PROGRAM-ID. MAIN.
PROCEDURE DIVISION.
    MOVE 3 TO RETURN-CODE.
    STOP RUN.
`,
    broken: `IDENTIFICATION DIVISION.
PROGRAM-ID. MAIN.
PROCEDURE DIVISION.
    DISPLAY UNDEFINED-ITEM.
    STOP RUN.
`,
  },
  nasm: {
    hello: `section .data
hello db "hello, world", 10
got db "got: "
section .bss
buf resb 256
section .text
global _start
_start:
    mov rax, 1
    mov rdi, 1
    mov rsi, hello
    mov rdx, 13
    syscall
    mov rax, 1
    mov rdi, 1
    mov rsi, got
    mov rdx, 5
    syscall
    mov rax, 0
    mov rdi, 0
    mov rsi, buf
    mov rdx, 256
    syscall
    mov rdx, rax
    mov rax, 1
    mov rdi, 1
    mov rsi, buf
    syscall
    mov rax, 60
    xor rdi, rdi
    syscall
`,
    exit: 'section .text\nglobal _start\n_start:\n    mov rax, 60\n    mov rdi, 3\n    syscall\n',
    broken: 'section .text\nglobal _start\n_start:\n    mov rax,\n',
  },
  java: {
    hello: `import java.io.*;
public class Main {
  public static void main(String[] args) throws IOException {
    System.out.println("hello, world");
    String line = new BufferedReader(new InputStreamReader(System.in)).readLine();
    System.out.println("got: " + (line == null ? "" : line));
    if (args[0].equals("crash")) throw new IllegalStateException("boom");
    System.exit(Integer.parseInt(args[0]));
  }
}
`,
    broken: 'public class Main { void broken( }\n',
  },
  kotlin: {
    hello: 'fun main() {\n    println("hello, world")\n    val l = readLine() ?: ""\n    println("got: $l")\n}\n',
    exit: 'import kotlin.system.exitProcess\n\nfun main() {\n    exitProcess(3)\n}\n',
    broken: 'fun main() {\n    val x: Int = "a"\n}\n',
  },
  scala: {
    hello: `object Main {
  def main(args: Array[String]): Unit = {
    println("hello, world")
    val l = scala.io.StdIn.readLine()
    println("got: " + l)
  }
}
`,
    exit: 'object Main {\n  def main(args: Array[String]): Unit = sys.exit(3)\n}\n',
    broken: 'object Main {\n  val x: Int = "a"\n}\n',
  },
  groovy: {
    hello: 'println "hello, world"\ndef l = System.in.newReader().readLine()\nprintln "got: " + l\n',
    exit: 'System.exit(3)\n',
  },
  clojure: {
    hello: '(println "hello, world")\n(println (str "got: " (read-line)))\n',
    exit: '(System/exit 3)\n',
  },
  csharp: {
    hello: `using System;
class Program {
    static void Main() {
        Console.WriteLine("hello, world");
        var l = Console.ReadLine();
        Console.WriteLine("got: " + l);
    }
}
`,
    exit: 'class Program {\n    static int Main() { return 3; }\n}\n',
    broken: 'class Program {\n    static void Main() { int x = "a"; }\n}\n',
  },
  haskell: {
    hello: 'main :: IO ()\nmain = do\n  putStrLn "hello, world"\n  l <- getLine\n  putStrLn ("got: " ++ l)\n',
    exit: 'import System.Exit\n\nmain :: IO ()\nmain = exitWith (ExitFailure 3)\n',
    broken: 'main :: IO ()\nmain = putStrLn 1\n',
  },
  ocaml: {
    hello: `let () =
  print_endline "hello, world";
  let l = try input_line stdin with End_of_file -> "" in
  print_endline ("got: " ^ l)
`,
    exit: 'let () = exit 3\n',
    broken: 'let () = print_endline 1\n',
  },
  erlang: {
    hello: `-module(main).
-export([main/1]).
main(_) ->
    io:format("hello, world~n"),
    L = string:trim(io:get_line(""), trailing, "\\n"),
    io:format("got: ~s~n", [L]).
`,
    exit: '-module(main).\n-export([main/1]).\nmain(_) -> halt(3).\n',
    broken: '-module(main).\n-export([main/1]).\nmain( -> ok.\n',
  },
  elixir: {
    hello: 'IO.puts("hello, world")\nl = IO.gets("") |> String.trim_trailing("\\n")\nIO.puts("got: " <> l)\n',
    exit: 'System.halt(3)\n',
  },
  racket: {
    hello: '#lang racket/base\n(displayln "hello, world")\n(displayln (string-append "got: " (read-line)))\n',
    exit: '#lang racket/base\n(exit 3)\n',
  },
  scheme: {
    hello: `(use-modules (ice-9 rdelim))
(display "hello, world")
(newline)
(display (string-append "got: " (read-line)))
(newline)
`,
    exit: '(exit 3)\n',
  },
  commonlisp: {
    hello: '(write-line "hello, world")\n(write-line (concatenate \'string "got: " (read-line)))\n',
    exit: '(sb-ext:exit :code 3)\n',
  },
  prolog: {
    hello: `:- initialization(main, main).
main :-
    write('hello, world'), nl,
    read_line_to_string(user_input, L),
    format("got: ~w~n", [L]).
`,
    exit: ':- initialization(main, main).\nmain :- halt(3).\n',
  },
};
