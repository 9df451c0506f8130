# Checks the head's locking contract (src/cluster/thread_annotations.hpp):
# compiles SOURCES with clang's -Wthread-safety as errors, each with the
# flags and include paths the build gave it (COMPILE_COMMANDS). Syntax only,
# so it is quick whichever compiler builds the project.
#   cmake -DCLANGXX=clang++ -DCOMPILE_COMMANDS=build/compile_commands.json
#         -DSOURCES="/abs/a.cpp;/abs/b.cpp" -P check_thread_safety.cmake
file(READ "${COMPILE_COMMANDS}" commands)
string(JSON count LENGTH "${commands}")
math(EXPR last "${count} - 1")
set(failed "")
foreach(source IN LISTS SOURCES)
  set(found FALSE)
  foreach(i RANGE ${last})
    string(JSON file GET "${commands}" ${i} file)
    if(NOT file STREQUAL source)
      continue()
    endif()
    set(found TRUE)
    string(JSON directory GET "${commands}" ${i} directory)
    string(JSON command GET "${commands}" ${i} command)
    separate_arguments(arguments UNIX_COMMAND "${command}")
    list(POP_FRONT arguments)  # the compiler the build uses
    set(flags "")
    set(skip_next FALSE)
    foreach(argument IN LISTS arguments)
      if(skip_next)
        set(skip_next FALSE)
      elseif(argument MATCHES "^-(o|MF|MT|MQ)$")
        set(skip_next TRUE)
      elseif(NOT argument MATCHES "^-(c|MD|MMD)$" AND NOT argument STREQUAL source)
        list(APPEND flags "${argument}")
      endif()
    endforeach()
    execute_process(
      COMMAND "${CLANGXX}" ${flags} -fsyntax-only -Wno-unknown-warning-option -Wthread-safety
              -Werror=thread-safety "${source}"
      WORKING_DIRECTORY "${directory}"
      RESULT_VARIABLE result)
    if(NOT result EQUAL 0)
      list(APPEND failed "${source}")
    endif()
    break()
  endforeach()
  if(NOT found)
    message(FATAL_ERROR "${source} is not in ${COMPILE_COMMANDS}; build the project first")
  endif()
endforeach()
if(failed)
  message(FATAL_ERROR "the locking contract is broken in: ${failed}")
endif()
