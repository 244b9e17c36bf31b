#include "data/tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <optional>

#include "data/tokenizer/byte_level.h"

namespace exatrain::tok {

struct PreTokenizer::Step {
  enum class Kind { Split, ByteLevel } kind;
  std::optional<OnigRegex> regex;  // Split's pattern, or ByteLevel's GPT-2 pattern when use_regex
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false;
};

PreTokenizer::PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;
PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::add_split(std::string_view regex, SplitBehavior behavior, bool invert) {
  auto step = std::make_unique<Step>();
  step->kind = Step::Kind::Split;
  step->regex.emplace(regex);
  step->behavior = behavior;
  step->invert = invert;
  steps_.push_back(std::move(step));
  maps_bytes_ = false;  // a split after ByteLevel sees (and leaves) mapped characters
}

void PreTokenizer::add_byte_level(bool add_prefix_space, bool use_regex) {
  auto step = std::make_unique<Step>();
  step->kind = Step::Kind::ByteLevel;
  if (use_regex) step->regex.emplace(kByteLevelPattern);
  step->add_prefix_space = add_prefix_space;
  steps_.push_back(std::move(step));
  maps_bytes_ = true;
}

namespace {

// NormalizedString::split of `tokenizers`: the pattern's matches and the gaps between them,
// regrouped by the delimiter behavior; empty results are dropped by the caller.
void split_piece(const PieceRef& piece, std::string_view text, const OnigRegex& regex, SplitBehavior behavior,
                 bool invert, PreTokenizeScratch& s) {
  auto& entries = s.entries;
  entries.clear();
  s.matches.clear();
  regex.find_all(text, s.matches, s.regex);
  uint32_t prev = 0;
  for (const Span& m : s.matches) {
    if (prev != m.begin) entries.push_back(SplitEntry{prev, m.begin, invert});
    entries.push_back(SplitEntry{m.begin, m.end, !invert});
    prev = m.end;
  }
  if (prev != text.size()) entries.push_back(SplitEntry{prev, uint32_t(text.size()), invert});

  auto emit = [&](uint32_t b, uint32_t e) {
    if (e > b) s.next.push_back(PieceRef{piece.begin + b, e - b, piece.in_arena});
  };
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (const SplitEntry& e : entries) emit(e.begin, e.end);
      return;
    case SplitBehavior::Removed:
      for (const SplitEntry& e : entries) {
        if (!e.is_match) emit(e.begin, e.end);
      }
      return;
    default:
      break;
  }
  // The merging behaviors fold over the entries exactly as `tokenizers` does.
  auto& acc = s.merged;
  acc.clear();
  bool previous_match = false;
  if (behavior == SplitBehavior::Contiguous) {
    for (const SplitEntry& e : entries) {
      if (e.is_match == previous_match && !acc.empty()) {
        acc.back().end = e.end;
      } else {
        acc.push_back(e);
      }
      previous_match = e.is_match;
    }
  } else if (behavior == SplitBehavior::MergedWithPrevious) {
    for (const SplitEntry& e : entries) {
      if (e.is_match && !previous_match && !acc.empty()) {
        acc.back().end = e.end;
      } else {
        acc.push_back(e);
      }
      previous_match = e.is_match;
    }
  } else {  // MergedWithNext: the same fold from the right
    for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
      if (it->is_match && !previous_match && !acc.empty()) {
        acc.back().begin = it->begin;
      } else {
        acc.push_back(*it);
      }
      previous_match = it->is_match;
    }
    std::reverse(acc.begin(), acc.end());
  }
  for (const SplitEntry& e : acc) emit(e.begin, e.end);
}

}  // namespace

void PreTokenizer::run(std::string_view text, PreTokenizeScratch& s) const {
  s.text = text;
  s.arena.clear();
  s.pieces.clear();
  if (!text.empty()) s.pieces.push_back(PieceRef{0, uint32_t(text.size()), false});
  bool pending_map = false;
  for (const auto& step : steps_) {
    if (pending_map) {
      // A later step sees the mapped characters, as it does in `tokenizers`.
      size_t need = s.arena.size();
      for (const PieceRef& p : s.pieces) need += 2 * size_t(p.length);  // at most 2 bytes per byte
      s.arena.reserve(need);  // views taken below stay valid while appending
      for (PieceRef& p : s.pieces) {
        uint32_t begin = uint32_t(s.arena.size());
        byte_level::append_mapped(s.view(p), s.arena);
        p = PieceRef{begin, uint32_t(s.arena.size() - begin), true};
      }
      pending_map = false;
    }
    s.next.clear();
    if (step->kind == Step::Kind::Split) {
      for (const PieceRef& p : s.pieces) {
        split_piece(p, s.view(p), *step->regex, step->behavior, step->invert, s);
      }
    } else {
      for (PieceRef p : s.pieces) {
        if (step->add_prefix_space && s.view(p).front() != ' ') {
          size_t need = s.arena.size() + p.length + 1;
          if (s.arena.capacity() < need) s.arena.reserve(std::max(need, 2 * s.arena.capacity()));
          std::string_view v = s.view(p);  // stable now: the append below does not reallocate
          uint32_t begin = uint32_t(s.arena.size());
          s.arena.push_back(' ');
          s.arena.append(v);
          p = PieceRef{begin, p.length + 1, true};
        }
        if (step->regex) {
          split_piece(p, s.view(p), *step->regex, SplitBehavior::Isolated, false, s);
        } else {
          s.next.push_back(p);
        }
      }
      pending_map = true;
    }
    s.pieces.swap(s.next);
  }
}

}  // namespace exatrain::tok
