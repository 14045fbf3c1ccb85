#!/usr/bin/env python3
"""Turns a CUDA source (.cu or .cuh) into C++ for the emulated device, keeping every line where it was.

Three constructs have no C++ spelling; everything else of the CUDA dialect is defined by emu/prelude.h:
  k<<<grid, block, shared, stream>>>(args)  ->  ::emu::launch([=](auto&&... a) { k(a...); }, "k", __FILE__,
                                                 __LINE__, ::emu::LaunchConfig(grid, block, shared, stream), args)
      The kernel is passed as a generic lambda, so template argument deduction still picks the kernel as
      nvcc would; the config expressions and the arguments keep their text and their lines.
  __shared__ T a[N], b;                     ->  static thread_local T a[N], b; ::emu::shared_touch(&a, sizeof a); ...
      One copy per OS thread (a block runs on one), poisoned by its first touch in each block.
  extern __shared__ T x[];                  ->  T* const x = static_cast<T*>(::emu::dynamic_shared());
And the body of each __global__ function starts with ::emu::kernel_entry(&k<its template parameters>,
"k", launch bounds): the kernel's address, for cudaFuncSetAttribute, and its __launch_bounds__.

The output starts with #line 1 "<path>" and no rewrite adds or removes a newline, so compiler messages,
__FILE__/__LINE__ in every report of the emulator and gdb's line table all point at the original source.

Usage: rewrite.py <input> <output> [<path to name in #line>]
"""
import re
import sys

IDENT = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


class Source:
    """The text with a mask of what is code (not a comment, string, character or preprocessor line)."""

    def __init__(self, text):
        self.text = text
        self.code = self._code_mask(text)

    @staticmethod
    def _code_mask(t):
        mask = bytearray(len(t))
        i, n, line_start = 0, len(t), True
        while i < n:
            c = t[i]
            if line_start and c in " \t":
                i += 1
                continue
            if line_start and c == "#":  # a preprocessor line, with its continuations
                while i < n and t[i] != "\n":
                    i += 2 if t[i] == "\\" else 1
                continue
            line_start = c == "\n"
            if t.startswith("//", i):
                while i < n and t[i] != "\n":
                    i += 1
                continue
            if t.startswith("/*", i):
                end = t.find("*/", i + 2)
                i = n if end < 0 else end + 2
                continue
            if c in "\"'":
                m = re.match(r'R"([^(]*)\(', t[i - 1:i + 20]) if c == '"' and i and t[i - 1] == "R" else None
                if m:  # raw string literal
                    end = t.find(")" + m.group(1) + '"', i)
                    i = n if end < 0 else end + len(m.group(1)) + 2
                    continue
                j = i + 1
                while j < n and t[j] != c:
                    j += 2 if t[j] == "\\" else 1
                i = j + 1
                continue
            mask[i] = 1
            i += 1
        return mask

    def find(self, word, start=0):
        """The next code position of `word` as a whole token."""
        t = self.text
        while True:
            i = t.find(word, start)
            if i < 0:
                return -1
            before = t[i - 1] if i else " "
            after = t[i + len(word)] if i + len(word) < len(t) else " "
            ident = word[0].isalnum() or word[0] == "_"
            if self.code[i] and not (ident and (before.isalnum() or before == "_" or after.isalnum() or after == "_")):
                return i
            start = i + 1

    def match_forward(self, i, open_c, close_c):
        """i at open_c; the index of its matching close_c (code only)."""
        depth, t = 0, self.text
        while i < len(t):
            if self.code[i]:
                if t[i] == open_c:
                    depth += 1
                elif t[i] == close_c:
                    depth -= 1
                    if depth == 0:
                        return i
            i += 1
        raise SyntaxError("unbalanced %s" % open_c)

    def skip_space(self, i):
        t = self.text
        while i < len(t) and (t[i].isspace() or not self.code[i]):
            i += 1
        return i


def line_of(text, i):
    return text.count("\n", 0, i) + 1


def split_top_level(s):
    """Splits at commas outside (), [], {}, <>."""
    parts, depth, cur = [], 0, ""
    for c in s:
        if c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    parts.append(cur)
    return [p for p in parts if p.strip()]


def kernel_expression_start(src, lt):
    """lt at '<<<': where the kernel expression before it starts (identifiers, ::, template arguments)."""
    t, i = src.text, lt
    while i > 0 and t[i - 1].isspace():
        i -= 1
    while i > 0:
        c = t[i - 1]
        if c == ">":  # template arguments: back to the matching '<'
            depth, j = 0, i - 1
            while j >= 0:
                if t[j] == ">":
                    depth += 1
                elif t[j] == "<":
                    depth -= 1
                    if depth == 0:
                        break
                j -= 1
            i = j
            while i > 0 and t[i - 1].isspace():
                i -= 1
            continue
        if c.isalnum() or c == "_" or c == ":":
            i -= 1
            continue
        break
    return i


def rewrite_launches(src, out):
    """Appends (start, end, replacement) edits for every kernel launch."""
    t, pos = src.text, 0
    while True:
        lt = src.find("<<<", pos)
        if lt < 0:
            return
        start = kernel_expression_start(src, lt)
        kernel = t[start:lt].strip()
        if not kernel:
            raise SyntaxError("line %d: a launch without a kernel name" % line_of(t, lt))
        gt = t.find(">>>", lt + 3)
        while gt >= 0 and not src.code[gt]:
            gt = t.find(">>>", gt + 1)
        if gt < 0:
            raise SyntaxError("line %d: '<<<' without '>>>'" % line_of(t, lt))
        config = t[lt + 3:gt]
        paren = src.skip_space(gt + 3)
        if t[paren] != "(":
            raise SyntaxError("line %d: a launch without arguments" % line_of(t, lt))
        close = src.match_forward(paren, "(", ")")
        args = t[paren + 1:close]
        name = " ".join(kernel.split())
        # The config and arguments keep their text (and newlines); the kernel's text moves into the lambda.
        replacement = ('::emu::launch([=](auto&&... emu_args_) { %s(emu_args_...); }, "%s", __FILE__, __LINE__, '
                       "::emu::LaunchConfig(%s)%s%s)" % (kernel, name, config, "," if args.strip() else "", args))
        out.append((start, close + 1, replacement))
        pos = close + 1


def template_arguments(src, global_pos):
    """The template parameters of the template that declares the kernel at global_pos, as arguments."""
    t = src.text
    i = global_pos
    while i > 0 and (t[i - 1].isspace() or not src.code[i - 1]):
        i -= 1
    if i == 0 or t[i - 1] != ">":
        return ""
    depth, j = 0, i - 1
    while j >= 0:
        if src.code[j] and t[j] == ">":
            depth += 1
        elif src.code[j] and t[j] == "<":
            depth -= 1
            if depth == 0:
                break
        j -= 1
    head = t[:j].rstrip()
    if not head.endswith("template"):
        return ""
    names = []
    for p in split_top_level(t[j + 1:i - 1]):
        p = p.split("=")[0].strip()
        pack = "..." in p
        name = IDENT.findall(p.replace("...", " "))[-1]
        names.append(name + ("..." if pack else ""))
    return "<%s>" % ", ".join(names)


def rewrite_kernels(src, out):
    """Edits that start each __global__ function's body with ::emu::kernel_entry."""
    t, pos = src.text, 0
    while True:
        g = src.find("__global__", pos)
        if g < 0:
            return
        pos = g + 10
        i, bounds, name = pos, "0", None
        while True:  # up to the parameter list: the name is the identifier before it
            i = src.skip_space(i)
            m = IDENT.match(t, i)
            if m and m.group(0) == "__launch_bounds__":
                close = src.match_forward(src.skip_space(m.end()), "(", ")")
                bounds = split_top_level(t[t.index("(", m.end()) + 1:close])[0].strip()
                i = close + 1
                continue
            if m:
                name = m.group(0)
                i = m.end()
                continue
            if t[i] in "*&:<>,":
                i += 1
                continue
            break
        if t[i] != "(" or name is None:
            raise SyntaxError("line %d: cannot read the __global__ function's name" % line_of(t, g))
        close = src.match_forward(i, "(", ")")
        body = src.skip_space(close + 1)
        if t[body] != "{":
            continue  # a declaration
        targs = template_arguments(src, g)
        entry = ' ::emu::kernel_entry(reinterpret_cast<const void*>(&%s%s), "%s", %s);' % (name, targs, name, bounds)
        out.append((body + 1, body + 1, entry))


def rewrite_shared(src, out):
    """Edits for the __shared__ declarations."""
    t, pos = src.text, 0
    while True:
        s = src.find("__shared__", pos)
        if s < 0:
            return
        pos = s + 10
        semi = t.index(";", s)
        prefix_start = s
        before = t[:s].rstrip()
        is_extern = before.endswith("extern")
        if is_extern:
            prefix_start = len(before) - len("extern")
        decl = t[s + 10:semi]
        if "\n" in decl:
            raise SyntaxError("line %d: keep a __shared__ declaration on one line" % line_of(t, s))
        decl = re.sub(r"__align__\s*\([^)]*\)", "", decl)
        if is_extern:
            m = re.match(r"\s*(.*?)\s*([A-Za-z_][A-Za-z_0-9]*)\s*\[\s*\]\s*$", decl)
            if not m:
                raise SyntaxError("line %d: expected extern __shared__ T name[];" % line_of(t, s))
            element, name = m.group(1), m.group(2)
            out.append((prefix_start, semi + 1,
                        "%s* const %s = static_cast<%s*>(::emu::dynamic_shared());" % (element, name, element)))
            continue
        m = re.match(r"\s*((?:const\s+|volatile\s+)*[A-Za-z_][A-Za-z_0-9:<>, ]*?)\s+([A-Za-z_].*)$", decl)
        if not m:
            raise SyntaxError("line %d: cannot read the __shared__ declaration" % line_of(t, s))
        declarators = split_top_level(m.group(2))
        names = [IDENT.match(d.strip()).group(0) for d in declarators]
        touches = " ".join("::emu::shared_touch(&%s, sizeof %s);" % (n, n) for n in names)
        out.append((s, semi + 1, "static thread_local%s; %s" % (t[s + 10:semi], touches)))


def rewrite(text, path):
    src = Source(text)
    edits = []
    rewrite_launches(src, edits)
    rewrite_kernels(src, edits)
    rewrite_shared(src, edits)
    edits.sort()
    result, last = [], 0
    for start, end, replacement in edits:
        if start < last:
            raise SyntaxError("line %d: overlapping rewrites" % line_of(text, start))
        result.append(text[last:start])
        result.append(replacement)
        last = end
    result.append(text[last:])
    body = "".join(result)
    if body.count("\n") != text.count("\n"):
        raise AssertionError("the rewrite changed the number of lines")
    return '#line 1 "%s"\n%s' % (path, body)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    source, target = sys.argv[1], sys.argv[2]
    name = sys.argv[3] if len(sys.argv) == 4 else source
    with open(source) as f:
        text = f.read()
    try:
        result = rewrite(text, name)
    except (SyntaxError, ValueError, IndexError) as e:
        sys.exit("%s: emulator rewrite failed: %s" % (source, e))
    with open(target + ".tmp", "w") as f:
        f.write(result)
    import os
    os.replace(target + ".tmp", target)


if __name__ == "__main__":
    main()
