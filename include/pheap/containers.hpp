// Standard containers whose memory lives in a heap, nested without spelling
// an allocator:
//
//   using Index = pheap::map<pheap::string, pheap::vector<int>>;
//   Index* index = heap.find_or_make<Index>("index");   // no allocator argument
//   (*index)["primes"].push_back(2);                     // the vector is in the heap too
//
// Each alias is the std container over a std::scoped_allocator_adaptor of
// pheap::allocator: a container passes its allocator down to the elements
// it constructs (uses-allocator construction), so a map of vectors of
// strings allocates every level in the map's heap. A container constructed
// without an allocator takes the heap that holds it (allocator.hpp has the
// rule), so one made inside a heap, as above, needs none either.
//
// String keys compare and hash as string views, so a lookup takes a
// literal, a std::string or a std::string_view without building a
// pheap::string:  index->find("primes").
#ifndef PHEAP_CONTAINERS_HPP_
#define PHEAP_CONTAINERS_HPP_

#include <pheap/allocator.hpp>

#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <scoped_allocator>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pheap {

// The allocator of the aliases below.
template <typename T>
using scoped_allocator = std::scoped_allocator_adaptor<allocator<T>>;

// Characters hold no allocator: a string takes pheap::allocator directly,
// and converts from the scoped one of a container that holds it.
template <typename CharT, typename Traits = std::char_traits<CharT>>
using basic_string = std::basic_string<CharT, Traits, allocator<CharT>>;
using string = basic_string<char>;
using wstring = basic_string<wchar_t>;

// The key functions of the maps below. Strings of any allocator compare
// and hash as their string views, transparently, so any string finds them;
// other keys use std::less<>, std::equal_to<> and std::hash<Key>.
template <typename Key>
struct less : std::less<> {};
template <typename CharT, typename Traits, typename Alloc>
struct less<std::basic_string<CharT, Traits, Alloc>> {
  using is_transparent = void;
  bool operator()(std::basic_string_view<CharT, Traits> a, std::basic_string_view<CharT, Traits> b) const noexcept {
    return a < b;
  }
};
template <typename Key>
struct equal_to : std::equal_to<> {};
template <typename CharT, typename Traits, typename Alloc>
struct equal_to<std::basic_string<CharT, Traits, Alloc>> {
  using is_transparent = void;
  bool operator()(std::basic_string_view<CharT, Traits> a, std::basic_string_view<CharT, Traits> b) const noexcept {
    return a == b;
  }
};
template <typename Key>
struct hash : std::hash<Key> {};
template <typename CharT, typename Traits, typename Alloc>
struct hash<std::basic_string<CharT, Traits, Alloc>> {
  using is_transparent = void;
  std::size_t operator()(std::basic_string_view<CharT, Traits> s) const noexcept {
    return std::hash<std::basic_string_view<CharT, Traits>>()(s);
  }
};

template <typename T>
using vector = std::vector<T, scoped_allocator<T>>;

template <typename T>
using deque = std::deque<T, scoped_allocator<T>>;

template <typename Key, typename T, typename Compare = pheap::less<Key>>
using map = std::map<Key, T, Compare, scoped_allocator<std::pair<const Key, T>>>;

template <typename Key, typename T, typename Hash = pheap::hash<Key>, typename KeyEqual = pheap::equal_to<Key>>
using unordered_map = std::unordered_map<Key, T, Hash, KeyEqual, scoped_allocator<std::pair<const Key, T>>>;

}  // namespace pheap

#endif  // PHEAP_CONTAINERS_HPP_
