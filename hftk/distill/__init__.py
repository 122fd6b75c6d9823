"""`hftk distill`: train a small student from a fine-tuned teacher (soft targets, layer init, hidden states).

    loss.py     the distillation losses and their convention
    recipe.py   the distill recipe (teacher, student, distill sections)
    teacher.py  load and vet the teacher; cache its outputs once
    student.py  student from teacher layers or a fresh config
    augment.py  teacher-labelled extra rows
    model.py    the module the shared loop trains, and its collator
    run.py      `distill(recipe)`: fine-tuning with a `Distiller`
"""
