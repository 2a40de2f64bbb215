//////////////////////////////////////////////////////////////////////////////
//
// (C) Copyright Ion Gaztanaga 2006-2012. Distributed under the Boost
// Software License, Version 1.0. (See accompanying file
// LICENSE_1_0.txt or copy at http://www.boost.org/LICENSE_1_0.txt)
//
// See http://www.boost.org/libs/interprocess for documentation.
//
//////////////////////////////////////////////////////////////////////////////
#if defined(BOOST_INTERPROCESS_MAPPED_FILES)

#include <boost/interprocess/detail/config_begin.hpp>
#include <boost/interprocess/detail/workaround.hpp>

#include <boost/interprocess/containers/list.hpp>
#include <pheap/managed_heap.hpp>
#include "tests/heap/boost_examples/checkpoint.hpp"  // pheap test
#include <boost/interprocess/allocators/allocator.hpp>
#include <cstddef>
#include <cstdio>


using namespace boost::interprocess;
typedef list<int, allocator<int, pheap::managed_heap::segment_manager> >
   MyList;

int main ()
{
   //Define file names
   const char *FileName       = "file_mapping";

   const std::size_t FileSize = 1000;
   pheap::managed_heap::remove(FileName);

   try{
      MyList::size_type old_size = 0;
      pheap::managed_heap::handle_t list_handle;
      {
         pheap::managed_heap mfile_memory(create_only, FileName, FileSize);
         MyList *mylist = mfile_memory.construct<MyList>("MyList")
                              (mfile_memory.get_segment_manager());

         //Obtain handle, that identifies the list in the buffer
         list_handle = mfile_memory.get_handle_from_address(mylist);

         //Fill list until there is no more room in the file
         try{
            while(1) {
               mylist->insert(mylist->begin(), 0);
            }
         }
         catch(const bad_alloc &){
            //mapped file is full
         }
         //Let's obtain the size of the list
         old_size = mylist->size();
      }
      //To make the list bigger, let's increase the mapped file
      //in FileSize bytes more.
      pheap::managed_heap::grow(FileName, FileSize*2);

      {
         pheap::managed_heap mfile_memory(open_only, FileName);


         //If mapping address has changed, the old pointer is invalid,
         //so use previously obtained handle to find the new pointer.
         MyList *mylist = static_cast<MyList *>
                           (mfile_memory.get_address_from_handle(list_handle));

         //Fill list until there is no more room in the file
         try{
            while(1) {
               mylist->insert(mylist->begin(), 0);
            }
         }
         catch(const bad_alloc &){
            //mapped file is full
         }

         //Let's obtain the new size of the list
         MyList::size_type new_size = mylist->size();

         assert(new_size > old_size);

         pheap_example_checkpoint(mfile_memory);  // pheap test: commit and crash here when asked
         //Destroy list
         mfile_memory.destroy_ptr(mylist);
      }
   }
   catch(...){
      pheap::managed_heap::remove(FileName);
      throw;
   }
   pheap::managed_heap::remove(FileName);
   return 0;
}

#include <boost/interprocess/detail/config_end.hpp>

#else //#if defined(BOOST_INTERPROCESS_MAPPED_FILES)
int main()
{
   return 0;
}
#endif//#if defined(BOOST_INTERPROCESS_MAPPED_FILES)
