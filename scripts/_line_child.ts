/**
 * A child Deno process spoken to in lines: a command line in on its stdin, one line of
 * JSON back on its stdout. The demo's hosts and the tests' multi-process fixtures use it.
 *
 * @module
 */

/** One reply of a child: a JSON object. */
// deno-lint-ignore no-explicit-any
export type Reply = Record<string, any>;

/** How {@linkcode LineChild.spawn} runs a child. */
export interface SpawnOptions {
  /** The working directory. */
  cwd?: string;
  /** Variables added to the environment. */
  env?: Record<string, string>;
  /** The child's stderr: kept for the error when it exits (`"piped"`, the default), shown
   * (`"inherit"`) or dropped (`"null"`). */
  stderr?: "piped" | "inherit" | "null";
}

/** A child process of `deno run -A --quiet <script> ...args`, in lines. */
export class LineChild {
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #lines: ReadableStreamDefaultReader<string>;
  #buffer = "";
  #stderr: Promise<string> | undefined;

  /**
   * @param label Its name in errors.
   * @param process The running child (stdin and stdout piped).
   */
  constructor(readonly label: string, readonly process: Deno.ChildProcess) {
    this.#writer = process.stdin.getWriter();
    this.#lines = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
    try {
      this.#stderr = new Response(process.stderr).text();
    } catch {
      this.#stderr = undefined; // stderr not piped
    }
  }

  /**
   * Starts `script` with `args` and reads its first line (its "ready" line). Called on a
   * subclass, makes one of that class.
   *
   * @returns The child and its first reply.
   */
  static async spawn<C extends LineChild>(
    this: new (label: string, process: Deno.ChildProcess) => C,
    label: string,
    script: string,
    args: string[],
    o: SpawnOptions = {},
  ): Promise<[C, Reply]> {
    const process = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", script, ...args],
      ...(o.cwd === undefined ? {} : { cwd: o.cwd }),
      env: { NO_COLOR: "1", ...o.env },
      stdin: "piped",
      stdout: "piped",
      stderr: o.stderr ?? "piped",
    }).spawn();
    const child = new this(label, process);
    return [child, await child.read()];
  }

  /**
   * The next line of the child, parsed.
   *
   * @throws {Error} If the child exited first (with its stderr when piped).
   */
  async read(): Promise<Reply> {
    for (;;) {
      const nl = this.#buffer.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        return JSON.parse(line) as Reply;
      }
      const { value, done } = await this.#lines.read();
      if (done) {
        const why = this.#stderr === undefined ? "" : `: ${await this.#stderr}`;
        throw new Error(`${this.label} exited${why}`);
      }
      this.#buffer += value;
    }
  }

  /** Sends `line` and returns the child's reply to it. */
  async send(line: string): Promise<Reply> {
    await this.#writer.write(new TextEncoder().encode(`${line}\n`));
    return await this.read();
  }

  /** Sends `exit` and waits for the child to end. */
  async exit(): Promise<void> {
    await this.send("exit").catch(() => {});
    await this.process.status;
  }
}
