// Marks one version requirement (e.g. GLIBCXX_3.4.32) of an ELF64 shared library as weak (VER_FLG_WEAK),
// so the dynamic loader accepts a libstdc++ that lacks it. patchelf has no option for this flag.
// Usage: elf_weak_version FILE VERSION_NAME   (edits FILE in place; exit 0 when the entry was found)
#include <elf.h>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 3) { std::fprintf(stderr, "usage: %s FILE VERSION\n", argv[0]); return 2; }
  std::ifstream in(argv[1], std::ios::binary);
  std::vector<unsigned char> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  if (b.size() < sizeof(Elf64_Ehdr) || std::memcmp(b.data(), ELFMAG, SELFMAG) != 0 || b[EI_CLASS] != ELFCLASS64) {
    std::fprintf(stderr, "%s: not an ELF64 file\n", argv[1]); return 2;
  }
  auto* eh = reinterpret_cast<Elf64_Ehdr*>(b.data());
  if (eh->e_shoff + (size_t)eh->e_shnum * sizeof(Elf64_Shdr) > b.size()) { std::fprintf(stderr, "bad section table\n"); return 2; }
  auto* sh = reinterpret_cast<Elf64_Shdr*>(b.data() + eh->e_shoff);
  bool found = false;
  for (int i = 0; i < eh->e_shnum; ++i) {
    if (sh[i].sh_type != SHT_GNU_verneed) continue;
    const Elf64_Shdr& strtab = sh[sh[i].sh_link];
    size_t off = sh[i].sh_offset;
    for (;;) {
      auto* vn = reinterpret_cast<Elf64_Verneed*>(b.data() + off);
      size_t aoff = off + vn->vn_aux;
      for (int k = 0; k < vn->vn_cnt; ++k) {
        auto* va = reinterpret_cast<Elf64_Vernaux*>(b.data() + aoff);
        const char* name = reinterpret_cast<const char*>(b.data() + strtab.sh_offset + va->vna_name);
        if (std::strcmp(name, argv[2]) == 0) { va->vna_flags |= VER_FLG_WEAK; found = true; }
        if (va->vna_next == 0) break;
        aoff += va->vna_next;
      }
      if (vn->vn_next == 0) break;
      off += vn->vn_next;
    }
  }
  if (!found) { std::fprintf(stderr, "%s: no requirement named %s\n", argv[1], argv[2]); return 1; }
  std::ofstream out(argv[1], std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), (std::streamsize)b.size());
  return out ? 0 : 2;
}
