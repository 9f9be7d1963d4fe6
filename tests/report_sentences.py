"""Real-style radiology sentences shared by the text-metric tests (written for medbench, not from a dataset)."""

SENTENCES = [
    "The heart size is normal.", "Heart size is mildly enlarged.", "There is moderate cardiomegaly.",
    "No pleural effusion.", "Small left pleural effusion.", "Possible small right pleural effusion.",
    "Large right-sided pleural effusion with adjacent atelectasis.", "No pneumothorax.",
    "There is a small apical pneumothorax on the left.", "Lungs are clear.",
    "Consolidation in the right lower lobe, concerning for pneumonia.", "Patchy opacity in the left lower lobe.",
    "No focal consolidation.", "A 1.2 cm nodule is seen in the right upper lobe.",
    "Mild pulmonary edema.", "No evidence of pulmonary edema.", "Mediastinal contours are unremarkable.",
    "Endotracheal tube terminates 4 cm above the carina.", "Right PICC line tip in the lower SVC.",
    "Degenerative changes of the thoracic spine.", "Bibasilar atelectasis; otherwise clear.",
    "Cardiomediastinal silhouette is stable.", "Interval increase in the left effusion.",
    "Pacemaker leads are in standard position.", "No acute cardiopulmonary process.",
    "Osseous structures are intact.", "Hyperinflated lungs consistent with COPD.",
    "Blunting of the costophrenic angles (left > right).", "Nasogastric tube courses below the diaphragm.",
    "There's no free air under the diaphragm.",
]
